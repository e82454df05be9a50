// The stepflash playground: a chat client of the public API
// (GET /v1/models, POST /v1/chat/completions), nothing else. Model text
// reaches the page only as text nodes (markdown.js); conversations and
// settings live in this browser's localStorage.
"use strict";

const $ = (id) => document.getElementById(id);
const STORE_CONVS = "stepflash.conversations";
const STORE_SETTINGS = "stepflash.settings";
const STORE_KEY = "stepflash.apiKey";

const state = {
  models: [],          // /v1/models entries
  convs: [],           // saved conversations, newest first
  current: null,       // the conversation shown
  pending: [],         // images attached to the next message: {url, name}
  controller: null,    // the running generation's AbortController
};

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function notice(text) {
  const n = $("notice");
  n.textContent = text || "";
  n.hidden = !text;
}

// ---- storage ----

function load(key, fallback) {
  try {
    const v = localStorage.getItem(key);
    return v === null ? fallback : JSON.parse(v);
  } catch (_) {
    return fallback;
  }
}

function save(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch (e) {
    notice("This browser's storage is full (" + e.name + "): delete old conversations (images take the most room).");
  }
}

function saveConvs() {
  save(STORE_CONVS, state.convs);
}

function settings() {
  return {
    model: $("model").value,
    effort: $("effort").value,
    advisor: $("advisor").value,
    system: $("system").value,
    maxTokens: $("max-tokens").value,
    temperature: $("temperature").value,
    tools: $("tools").value,
  };
}

function saveSettings() {
  save(STORE_SETTINGS, settings());
}

function restoreSettings() {
  const s = load(STORE_SETTINGS, {});
  for (const [id, key] of [["effort", "effort"], ["advisor", "advisor"], ["system", "system"],
    ["max-tokens", "maxTokens"], ["temperature", "temperature"], ["tools", "tools"]]) {
    if (typeof s[key] === "string") $(id).value = s[key];
  }
  $("api-key").value = localStorage.getItem(STORE_KEY) || "";
  return s;
}

// ---- the API ----

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

// apiError turns a failed response into "STATUS code: message".
async function apiError(resp) {
  let msg = resp.statusText;
  try {
    const e = (await resp.json()).error;
    if (e && e.message) msg = (e.code ? e.code + ": " : "") + e.message;
  } catch (_) { /* not JSON */ }
  return resp.status + " " + msg;
}

async function loadModels(preferred) {
  let resp;
  try {
    resp = await fetch("/v1/models", { headers: headers() });
  } catch (e) {
    notice("The server cannot be reached: " + e.message);
    return;
  }
  if (!resp.ok) {
    const msg = await apiError(resp);
    notice("Models could not be listed: " + msg + (resp.status === 401 ? " Set the API key in Settings." : ""));
    return;
  }
  notice("");
  state.models = (await resp.json()).data || [];
  const sel = $("model");
  const was = preferred || sel.value;
  sel.replaceChildren();
  for (const m of state.models) {
    const o = el("option", "", m.id);
    o.value = m.id;
    sel.append(o);
  }
  if (state.models.some((m) => m.id === was)) sel.value = was;
  modelChanged();
}

function currentModel() {
  return state.models.find((m) => m.id === $("model").value);
}

function takesImages() {
  const m = currentModel();
  return !!(m && (m.input_modalities || []).includes("image"));
}

function modelChanged() {
  const images = takesImages();
  $("attach-label").hidden = !images;
  if (!images && state.pending.length) {
    state.pending = [];
    renderAttachments();
  }
  saveSettings();
}

// parseTools reads the tools editor: a JSON array of function tools.
function parseTools() {
  const text = $("tools").value.trim();
  const status = $("tools-status");
  if (!text) {
    status.textContent = "";
    return [];
  }
  let tools;
  try {
    tools = JSON.parse(text);
  } catch (e) {
    status.textContent = "Not JSON: " + e.message;
    return null;
  }
  if (!Array.isArray(tools)) tools = [tools];
  for (const [i, t] of tools.entries()) {
    const fn = t && t.type === "function" ? t.function : null;
    if (!fn || typeof fn.name !== "string" || !fn.name) {
      status.textContent = "Tool " + i + " is not {\"type\": \"function\", \"function\": {\"name\": …, \"parameters\": …}}.";
      return null;
    }
  }
  status.textContent = tools.length + " tool" + (tools.length === 1 ? "" : "s") + ": " + tools.map((t) => t.function.name).join(", ");
  return tools;
}

// apiMessages is the conversation as the API takes it.
function apiMessages(msgs) {
  const out = [];
  const system = $("system").value.trim();
  if (system) out.push({ role: "system", content: system });
  for (const m of msgs) {
    if (m.role === "assistant") {
      if (!m.content && !(m.tool_calls && m.tool_calls.length)) continue; // failed or stopped before a word
      const a = { role: "assistant", content: m.content || null };
      if (m.tool_calls && m.tool_calls.length) a.tool_calls = m.tool_calls;
      out.push(a);
    } else if (m.role === "tool") {
      out.push({ role: "tool", tool_call_id: m.tool_call_id, content: m.content });
    } else {
      out.push({ role: m.role, content: m.content });
    }
  }
  return out;
}

// requestBody is the chat completion request for msgs with the current
// settings (null when the tools do not parse).
function requestBody(msgs, stream) {
  const s = settings();
  const tools = parseTools();
  if (tools === null) return null;
  const b = { model: s.model, messages: apiMessages(msgs) };
  if (s.effort) b.reasoning_effort = s.effort;
  if (s.advisor) b.advisor = s.advisor;
  if (s.maxTokens) b.max_tokens = Number(s.maxTokens);
  if (s.temperature !== "") b.temperature = Number(s.temperature);
  if (tools.length) b.tools = tools;
  if (stream) {
    b.stream = true;
    b.stream_options = { include_usage: true };
  }
  return b;
}

// ---- conversations ----

function newConversation() {
  if (state.current && !state.current.messages.length) {
    $("input").focus(); // the one shown is still empty
    return;
  }
  const c = { id: Date.now().toString(36) + Math.random().toString(36).slice(2, 6), title: "New conversation", messages: [], updated: Date.now() };
  state.convs.unshift(c);
  select(c);
}

function select(c) {
  state.current = c;
  renderConversations();
  renderMessages();
  $("input").focus();
}

function deleteConversation(c) {
  state.convs = state.convs.filter((x) => x !== c);
  saveConvs();
  if (state.current === c) {
    if (state.convs.length) select(state.convs[0]);
    else newConversation();
  } else {
    renderConversations();
  }
}

function renderConversations() {
  const ul = $("conversations");
  ul.replaceChildren();
  for (const c of state.convs) {
    const li = el("li", c === state.current ? "active" : "");
    const open = el("button", "open", c.title);
    open.type = "button";
    open.addEventListener("click", () => {
      if (!state.controller) select(c);
      document.body.classList.remove("sidebar-open");
    });
    const del = el("button", "delete", "×");
    del.type = "button";
    del.title = "Delete this conversation";
    del.setAttribute("aria-label", "Delete " + c.title);
    del.addEventListener("click", () => { if (!state.controller) deleteConversation(c); });
    li.append(open, del);
    ul.append(li);
  }
}

// ---- rendering messages ----

function renderMessages() {
  const box = $("messages");
  box.replaceChildren();
  const msgs = state.current ? state.current.messages : [];
  if (!msgs.length) {
    box.append(el("p", "empty", "Ask something. The reply streams in with its tokens, the effort applied and its cost."));
  }
  msgs.forEach((m, i) => box.append(messageNode(m, i)));
  box.scrollTop = box.scrollHeight;
}

function fmtCost(usd) {
  if (typeof usd !== "number") return "";
  if (usd === 0) return "$0";
  return "$" + usd.toLocaleString("en-US", { maximumSignificantDigits: 3, maximumFractionDigits: 10 });
}

function textOf(content) {
  if (typeof content === "string") return content;
  return (content || []).filter((p) => p.type === "text").map((p) => p.text).join("\n");
}

function messageNode(m, index) {
  const node = el("article", "msg " + m.role);
  node.dataset.role = m.role;
  node.dataset.index = index;
  if (m.meta && m.meta.state) node.dataset.state = m.meta.state;
  const who = el("div", "who", m.role === "tool" ? "tool result (" + m.tool_call_id + ")" : m.role);
  if (m.meta && m.meta.model) who.append(el("span", "model", " · " + m.meta.model));
  node.append(who);

  if (m.role === "user") {
    const body = el("div", "content");
    body.append(Markdown.render(textOf(m.content)));
    node.append(body);
    if (Array.isArray(m.content)) {
      const imgs = el("div", "images");
      for (const p of m.content) {
        if (p.type === "image_url") {
          const img = el("img");
          img.src = p.image_url.url;
          img.alt = "attached image";
          imgs.append(img);
        }
      }
      node.append(imgs);
    }
    return node;
  }
  if (m.role === "tool") {
    node.append(el("pre", "content tool-result", m.content));
    return node;
  }

  if (m.reasoning) {
    const d = el("details", "reasoning");
    d.open = !!(m.meta && m.meta.state === "streaming" && !m.content);
    const r = m.meta && m.meta.usage && m.meta.usage.completion_tokens_details;
    d.append(el("summary", "", "Reasoning" + (r && r.reasoning_tokens ? " (" + r.reasoning_tokens + " tokens)" : "")));
    d.append(el("div", "reasoning-text", m.reasoning));
    node.append(d);
  }
  const body = el("div", "content");
  body.append(Markdown.render(m.content || ""));
  node.append(body);
  if (m.tool_calls && m.tool_calls.length) node.append(toolCallsNode(m, index));
  if (m.meta && m.meta.error) node.append(el("p", "error", m.meta.error));
  if (m.meta && m.meta.state === "stopped") node.append(el("p", "stopped", "Stopped."));
  if (m.meta) node.append(statsNode(m.meta));
  return node;
}

function toolCallsNode(m, index) {
  const box = el("div", "tool-calls");
  const later = state.current.messages.slice(index + 1);
  for (const call of m.tool_calls) {
    const c = el("div", "tool-call");
    c.append(el("span", "label", "tool call"), el("code", "", call.function.name + "(" + call.function.arguments + ")"));
    const answered = later.find((x) => x.role === "tool" && x.tool_call_id === call.id);
    if (!answered && index === state.current.messages.length - 1 && !state.controller) {
      const f = el("form", "tool-answer");
      const input = el("input");
      input.placeholder = "result of " + call.function.name;
      input.setAttribute("aria-label", "Result of " + call.function.name);
      const b = el("button", "", "Send result");
      f.append(input, b);
      f.addEventListener("submit", (e) => {
        e.preventDefault();
        answerToolCall(m, call, input.value);
      });
      c.append(f);
    }
    box.append(c);
  }
  return box;
}

function answerToolCall(m, call, result) {
  const msgs = state.current.messages;
  msgs.push({ role: "tool", tool_call_id: call.id, content: result });
  const i = msgs.indexOf(m);
  const answered = new Set(msgs.slice(i + 1).filter((x) => x.role === "tool").map((x) => x.tool_call_id));
  saveConvs();
  if (m.tool_calls.every((c) => answered.has(c.id))) generate();
  else renderMessages();
}

function statsNode(meta) {
  const s = el("div", "stats");
  const u = meta.usage;
  const add = (cls, label, value) => {
    const span = el("span", "stat " + cls);
    span.append(el("span", "k", label + " "), el("span", "v", value));
    s.append(span);
  };
  if (u) {
    add("prompt", "prompt", u.prompt_tokens);
    add("cached", "cached", (u.prompt_tokens_details && u.prompt_tokens_details.cached_tokens) || u.cached_tokens || 0);
    add("completion", "completion", u.completion_tokens);
    add("reasoning", "reasoning", (u.completion_tokens_details && u.completion_tokens_details.reasoning_tokens) || 0);
  }
  const eff = meta.stepflash && meta.stepflash.effort;
  if (eff) {
    const span = el("span", "stat effort");
    span.dataset.applied = eff.applied || "";
    span.dataset.requested = eff.requested || "";
    let v = eff.applied;
    if (eff.requested !== eff.applied) v = (eff.requested || "default") + " → " + eff.applied;
    span.append(el("span", "k", "effort "), el("span", "v", v));
    if (eff.experts_per_token) span.title = eff.experts_per_token + " experts per token";
    if (eff.thinking_budget !== undefined && eff.thinking_budget !== null) {
      span.title = (span.title ? span.title + ", " : "") + "thinking budget " + (eff.thinking_budget < 0 ? "unlimited" : eff.thinking_budget + " tokens");
    }
    s.append(span);
  } else if (meta.effortHeader) {
    add("effort", "effort", meta.effortHeader);
  }
  const adv = u && u.advisor;
  if (adv || (meta.advisorHeader && meta.advisorHeader !== "none")) {
    const b = el("span", "badge advisor");
    if (adv && adv.escalated) {
      b.classList.add("escalated");
      b.textContent = "advisor: " + (adv.reason || meta.advisorHeader) + (adv.model ? " → " + adv.model : "") + (typeof adv.cost === "number" ? " " + fmtCost(adv.cost) : "");
    } else if (adv) {
      b.textContent = "advisor: not needed" + (adv.reason ? " (" + adv.reason + (adv.error ? ": " + adv.error : "") + ")" : "");
    } else {
      b.textContent = "advisor: " + meta.advisorHeader;
    }
    s.append(b);
  }
  if (u && typeof u.cost === "number") add("cost", "cost", fmtCost(u.cost));
  if (meta.finish && meta.finish !== "stop") add("finish", "finish", meta.finish);
  return s;
}

// update redraws one message (at most once a frame while streaming).
let frame = 0;
function update(m) {
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    const box = $("messages");
    const i = state.current.messages.indexOf(m);
    const old = box.querySelector('article[data-index="' + i + '"]');
    if (!old) return renderMessages();
    const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    old.replaceWith(messageNode(m, i));
    if (nearBottom) box.scrollTop = box.scrollHeight;
  });
}

// ---- attachments ----

function renderAttachments() {
  const box = $("attachments");
  box.replaceChildren();
  state.pending.forEach((a, i) => {
    const f = el("figure", "attachment");
    const img = el("img");
    img.src = a.url;
    img.alt = a.name;
    const rm = el("button", "", "×");
    rm.type = "button";
    rm.title = "Remove " + a.name;
    rm.addEventListener("click", () => {
      state.pending.splice(i, 1);
      renderAttachments();
    });
    f.append(img, rm);
    box.append(f);
  });
}

function attach(files) {
  const images = [...files].filter((f) => f.type.startsWith("image/"));
  if (!images.length) return;
  if (!takesImages()) {
    notice("The model " + $("model").value + " does not take images (its input_modalities in /v1/models).");
    return;
  }
  for (const f of images) {
    const r = new FileReader();
    r.onload = () => {
      state.pending.push({ url: r.result, name: f.name || "pasted image" });
      renderAttachments();
    };
    r.onerror = () => notice("The image " + f.name + " could not be read.");
    r.readAsDataURL(f);
  }
}

// ---- sending and streaming ----

function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  document.body.classList.toggle("busy", busy);
}

function submit() {
  if (state.controller) return;
  const text = $("input").value.replace(/^\s*\n|\n\s*$/g, ""); // blank lines around the message
  if (!text.trim() && !state.pending.length) return;
  let content = text;
  if (state.pending.length) {
    content = state.pending.map((a) => ({ type: "image_url", image_url: { url: a.url } }));
    if (text.trim()) content.push({ type: "text", text });
  }
  const c = state.current;
  c.messages.push({ role: "user", content });
  if (c.title === "New conversation") c.title = (text.trim() || "Image").slice(0, 48);
  $("input").value = "";
  state.pending = [];
  renderAttachments();
  generate();
}

// sse yields the data of each server-sent event of a response body.
async function* sse(body) {
  const reader = body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = ev.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, "")).join("\n");
      if (data) yield data;
    }
  }
}

// applyChunk folds one stream chunk into the assistant message m.
function applyChunk(m, chunk) {
  if (chunk.stepflash) m.meta.stepflash = Object.assign({}, m.meta.stepflash, chunk.stepflash);
  if (chunk.usage) m.meta.usage = chunk.usage;
  if (chunk.model) m.meta.model = chunk.model;
  const ch = chunk.choices && chunk.choices[0];
  if (!ch) return;
  const d = ch.delta || {};
  const r = d.reasoning_content !== undefined ? d.reasoning_content : d.reasoning;
  if (r) m.reasoning = (m.reasoning || "") + r;
  if (d.content) m.content += d.content;
  for (const tc of d.tool_calls || []) {
    m.tool_calls = m.tool_calls || [];
    let call = m.tool_calls[tc.index];
    if (!call) call = m.tool_calls[tc.index] = { id: "", type: "function", function: { name: "", arguments: "" } };
    if (tc.id) call.id = tc.id;
    if (tc.function && tc.function.name) call.function.name += tc.function.name;
    if (tc.function && tc.function.arguments) call.function.arguments += tc.function.arguments;
  }
  if (ch.finish_reason) m.meta.finish = ch.finish_reason;
}

async function generate() {
  const c = state.current;
  const body = requestBody(c.messages, true);
  if (!body) {
    $("settings").open = true;
    notice("The tools are not valid JSON function tools: " + $("tools-status").textContent);
    renderMessages();
    return;
  }
  notice("");
  const m = { role: "assistant", content: "", meta: { state: "streaming", model: body.model } };
  c.messages.push(m);
  c.updated = Date.now();
  state.convs = [c, ...state.convs.filter((x) => x !== c)];
  renderConversations();
  renderMessages();
  const ctrl = new AbortController();
  state.controller = ctrl;
  setBusy(true);
  try {
    const resp = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body), signal: ctrl.signal });
    m.meta.effortHeader = resp.headers.get("X-Reasoning-Effort");
    m.meta.advisorHeader = resp.headers.get("X-Advisor");
    if (!resp.ok) {
      m.meta.error = await apiError(resp);
      m.meta.state = "error";
    } else {
      for await (const data of sse(resp.body)) {
        if (data === "[DONE]") break;
        const chunk = JSON.parse(data);
        if (chunk.error) {
          m.meta.error = (chunk.error.code ? chunk.error.code + ": " : "") + chunk.error.message;
          m.meta.state = "error";
          continue;
        }
        applyChunk(m, chunk);
        update(m);
      }
      if (m.meta.state === "streaming") m.meta.state = "done";
    }
  } catch (e) {
    if (e.name === "AbortError") {
      m.meta.state = "stopped";
    } else {
      m.meta.state = "error";
      m.meta.error = "The request failed: " + e.message;
    }
  } finally {
    state.controller = null;
    setBusy(false);
    if (m.tool_calls) m.tool_calls = m.tool_calls.filter(Boolean);
    saveConvs();
    cancelAnimationFrame(frame);
    frame = 0;
    renderMessages();
  }
}

function stop() {
  if (state.controller) state.controller.abort();
}

// ---- export ----

// pyLiteral writes a JSON value as Python source.
function pyLiteral(v, indent) {
  const pad = "    ".repeat(indent + 1);
  const end = "    ".repeat(indent);
  if (v === null) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "string" || typeof v === "number") return JSON.stringify(v);
  if (Array.isArray(v)) {
    if (!v.length) return "[]";
    return "[\n" + v.map((x) => pad + pyLiteral(x, indent + 1)).join(",\n") + ",\n" + end + "]";
  }
  const keys = Object.keys(v);
  if (!keys.length) return "{}";
  return "{\n" + keys.map((k) => pad + JSON.stringify(k) + ": " + pyLiteral(v[k], indent + 1)).join(",\n") + ",\n" + end + "}";
}

// exportRequest is the request of the conversation's last turn: every
// message before its last reply.
function exportRequest() {
  const msgs = state.current.messages.slice();
  while (msgs.length && msgs[msgs.length - 1].role === "assistant") msgs.pop();
  return requestBody(msgs, false);
}

function exportCode(lang, body) {
  const base = location.origin + "/v1";
  if (lang === "curl") {
    return "curl " + base + "/chat/completions \\\n" +
      "  -H \"Content-Type: application/json\" \\\n" +
      "  -H \"Authorization: Bearer $STEPFLASH_API_KEY\" \\\n" +
      "  -d @- <<'JSON'\n" + JSON.stringify(body, null, 2) + "\nJSON\n";
  }
  const { model, messages, advisor, ...rest } = body;
  if (lang === "python") {
    let args = "    model=" + JSON.stringify(model) + ",\n    messages=" + pyLiteral(messages, 1) + ",\n";
    for (const [k, v] of Object.entries(rest)) args += "    " + k + "=" + pyLiteral(v, 1) + ",\n";
    if (advisor) args += "    extra_body={\"advisor\": " + JSON.stringify(advisor) + "},\n";
    return "import os\n\nfrom openai import OpenAI\n\n" +
      "client = OpenAI(base_url=" + JSON.stringify(base) + ", api_key=os.environ.get(\"STEPFLASH_API_KEY\", \"none\"))\n" +
      "response = client.chat.completions.create(\n" + args + ")\n" +
      "print(response.choices[0].message.content)\nprint(response.usage)\n";
  }
  return "import OpenAI from \"openai\";\n\n" +
    "const client = new OpenAI({ baseURL: " + JSON.stringify(base) + ", apiKey: process.env.STEPFLASH_API_KEY ?? \"none\" });\n" +
    "const response = await client.chat.completions.create(" + JSON.stringify(body, null, 2) + ");\n" +
    "console.log(response.choices[0].message.content);\nconsole.log(response.usage);\n";
}

function showExport(lang) {
  const body = exportRequest();
  if (!body) {
    notice("The tools are not valid JSON function tools: " + $("tools-status").textContent);
    return;
  }
  for (const b of document.querySelectorAll("#export-dialog .tabs button")) {
    b.setAttribute("aria-selected", String(b.dataset.lang === lang));
  }
  $("export-code").dataset.lang = lang;
  $("export-code").textContent = exportCode(lang, body);
  const d = $("export-dialog");
  if (!d.open) d.showModal();
}

// ---- wiring ----

function init() {
  const saved = restoreSettings();
  state.convs = load(STORE_CONVS, []).filter((c) => c && Array.isArray(c.messages));
  for (const c of state.convs) {
    for (const m of c.messages) {
      if (m.meta && m.meta.state === "streaming") m.meta.state = "stopped"; // the page closed mid-stream
    }
  }
  if (state.convs.length) select(state.convs[0]);
  else newConversation();
  parseTools();
  loadModels(saved.model);

  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    submit();
  });
  $("input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && state.controller) {
      e.preventDefault();
      stop();
    }
  });
  $("stop").addEventListener("click", stop);
  $("new-chat").addEventListener("click", () => { if (!state.controller) newConversation(); });
  $("model").addEventListener("change", modelChanged);
  for (const id of ["effort", "advisor", "system", "max-tokens", "temperature"]) $(id).addEventListener("change", saveSettings);
  $("tools").addEventListener("input", () => {
    parseTools();
    saveSettings();
  });
  $("api-key").addEventListener("change", () => {
    localStorage.setItem(STORE_KEY, $("api-key").value.trim());
    loadModels();
  });
  $("attach").addEventListener("change", (e) => {
    attach(e.target.files);
    e.target.value = "";
  });
  $("input").addEventListener("paste", (e) => {
    const files = [...(e.clipboardData ? e.clipboardData.files : [])];
    if (files.some((f) => f.type.startsWith("image/"))) {
      e.preventDefault();
      attach(files);
    }
  });
  const main = document.querySelector("main");
  main.addEventListener("dragover", (e) => {
    if ([...e.dataTransfer.types].includes("Files")) {
      e.preventDefault();
      main.classList.add("dropping");
    }
  });
  main.addEventListener("dragleave", () => main.classList.remove("dropping"));
  main.addEventListener("drop", (e) => {
    e.preventDefault();
    main.classList.remove("dropping");
    attach(e.dataTransfer.files);
  });
  $("export").addEventListener("click", () => showExport("curl"));
  for (const b of document.querySelectorAll("#export-dialog .tabs button")) {
    b.addEventListener("click", () => showExport(b.dataset.lang));
  }
  $("copy").addEventListener("click", () => {
    navigator.clipboard.writeText($("export-code").textContent).then(
      () => { $("copy").textContent = "Copied"; setTimeout(() => { $("copy").textContent = "Copy"; }, 1500); },
      () => notice("Copying needs a secure context (https or localhost): select the text instead."));
  });
  $("close-export").addEventListener("click", () => $("export-dialog").close());
  $("toggle-sidebar").addEventListener("click", () => document.body.classList.toggle("sidebar-open"));
}

document.addEventListener("DOMContentLoaded", init);
