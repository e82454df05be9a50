// The stepflash usage dashboard: a client of GET /v1/usage (docs/dashboard.md)
// with the operator key typed here (kept in this browser's localStorage).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY = "stepflash.dashboard.key";
  const RANGE = "stepflash.dashboard.range";
  const RANGES = {"1h": 3600e3, "6h": 6 * 3600e3, "24h": 24 * 3600e3, "7d": 7 * 24 * 3600e3, "30d": 30 * 24 * 3600e3};
  const TIERS = ["none", "low", "medium", "high"];

  const int = (v) => Math.round(v).toLocaleString("en-US");
  const usd = (v) => "$" + (v >= 1 ? v.toFixed(2) : v >= 0.01 ? v.toFixed(4) : v.toPrecision(3).replace(/\.?0+$/, ""));
  const pct = (v) => (100 * v).toFixed(v > 0 && v < 0.1 ? 1 : 0) + "%";
  const ms = (v) => v >= 1000 ? (v / 1000).toFixed(1) + " s" : v >= 10 ? Math.round(v) + " ms" : v.toFixed(1) + " ms";

  async function report(since, until, groupBy) {
    const q = new URLSearchParams({since, until});
    if (groupBy) q.set("group_by", groupBy);
    const headers = {};
    const key = $("api-key").value.trim();
    if (key) headers.Authorization = "Bearer " + key;
    const resp = await fetch("/v1/usage?" + q, {headers, cache: "no-store"});
    let body;
    try { body = await resp.json(); } catch { body = null; }
    if (!resp.ok) {
      const msg = body && body.error && body.error.message ? body.error.message : `HTTP ${resp.status}`;
      throw new Error(msg);
    }
    return body;
  }

  // values is one number (or null) per bucket of rep from its series.
  function values(rep, group, pick, empty) {
    const at = new Map();
    for (const p of rep.series) if (p.group === group) at.set(Date.parse(p.time), p);
    return rep.buckets.map((b) => {
      const p = at.get(Date.parse(b));
      return p ? pick(p) : empty;
    });
  }
  const groups = (rep) => rep.groups.map((g) => g.group);
  const label = (g) => g === "" ? "(none)" : g;

  function cards(total) {
    const items = [
      ["requests", "Requests", int(total.requests)], ["errors", "Errors", int(total.errors)],
      ["cost", "Cost", usd(total.cost_usd)], ["prompt", "Prompt tokens", int(total.prompt_tokens)],
      ["cached", "Cached tokens", int(total.cached_tokens)], ["completion", "Completion tokens", int(total.completion_tokens)],
      ["reasoning", "Reasoning tokens", int(total.reasoning_tokens)], ["cache", "Cache-hit share", pct(total.cache_hit_share)],
      ["advisor", "Advisor escalations", int(total.advisor_escalations)], ["advisor-cost", "Advisor cost", usd(total.advisor_cost_usd)],
      ["p50", "Latency p50", ms(total.latency_ms.p50)], ["p99", "Latency p99", ms(total.latency_ms.p99)],
    ];
    $("totals").replaceChildren(...items.map(([id, k, v]) => {
      const d = document.createElement("div");
      d.className = "card";
      d.dataset.field = id;
      const ks = document.createElement("span");
      ks.className = "k";
      ks.textContent = k;
      const vs = document.createElement("span");
      vs.className = "v";
      vs.textContent = v;
      d.append(ks, vs);
      return d;
    }));
  }

  function table(id, rep) {
    const t = $(id);
    const cap = t.querySelector("caption");
    t.replaceChildren(cap);
    const head = t.insertRow();
    for (const h of [rep.group_by, "requests", "errors", "prompt", "cached", "completion", "cost", "p50", "p95", "p99"]) {
      const th = document.createElement("th");
      th.textContent = h;
      head.appendChild(th);
    }
    for (const g of rep.groups) {
      const r = t.insertRow();
      r.dataset.group = g.group;
      for (const v of [label(g.group), int(g.requests), int(g.errors), int(g.prompt_tokens), int(g.cached_tokens),
        int(g.completion_tokens), usd(g.cost_usd), ms(g.latency_ms.p50), ms(g.latency_ms.p95), ms(g.latency_ms.p99)]) {
        r.insertCell().textContent = v;
      }
    }
  }

  function render(all, byModel, byKey, byRegion) {
    const base = {buckets: all.buckets, interval: all.interval};
    const per = (rep, pick) => groups(rep).map((g) => ({name: label(g), values: values(rep, g, pick, 0)}));
    cards(all.total);
    Charts.line($("chart-requests-model").querySelector(".plot"), {...base, series: per(byModel, (p) => p.requests), fmt: int, minMax: 4});
    Charts.line($("chart-requests-key").querySelector(".plot"), {...base, series: per(byKey, (p) => p.requests), fmt: int, minMax: 4});
    Charts.line($("chart-requests-region").querySelector(".plot"), {...base, series: per(byRegion, (p) => p.requests), fmt: int, minMax: 4});
    Charts.bars($("chart-cost-key").querySelector(".plot"), {...base, series: per(byKey, (p) => p.cost_usd), fmt: usd});
    Charts.bars($("chart-tokens").querySelector(".plot"), {...base, fmt: int, minMax: 4, series: [
      {name: "prompt (uncached)", values: values(all, "", (p) => p.prompt_tokens - p.cached_tokens, 0)},
      {name: "cached", values: values(all, "", (p) => p.cached_tokens, 0)},
      {name: "completion", values: values(all, "", (p) => p.completion_tokens, 0)},
    ]});
    Charts.line($("chart-cache").querySelector(".plot"), {...base, fmt: pct,
      series: [{name: "", values: values(all, "", (p) => p.prompt_tokens > 0 ? p.cache_hit_share : null, null)}]});
    const tiers = [...TIERS];
    for (const p of all.series) for (const t of Object.keys(p.effort)) if (!tiers.includes(t)) tiers.push(t);
    Charts.bars($("chart-effort").querySelector(".plot"), {...base, fmt: int, minMax: 4,
      series: tiers.map((t) => ({name: t, values: values(all, "", (p) => p.effort[t] || 0, 0)}))});
    Charts.bars($("chart-advisor").querySelector(".plot"), {...base, fmt: int, minMax: 4,
      series: [{name: "escalations", values: values(all, "", (p) => p.advisor_escalations, 0)}]});
    Charts.bars($("chart-advisor-cost").querySelector(".plot"), {...base, fmt: usd,
      series: [{name: "advisor cost", values: values(all, "", (p) => p.advisor_cost_usd, 0)}]});
    const ok = (p) => p.requests > p.errors;
    Charts.line($("chart-latency").querySelector(".plot"), {...base, fmt: ms, series: ["p50", "p95", "p99"].map((k) =>
      ({name: k, values: values(all, "", (p) => ok(p) ? p.latency_ms[k] : null, null)}))});
    table("table-model", byModel);
    table("table-key", byKey);
    table("table-region", byRegion);
  }

  let loading = 0;
  async function load() {
    const seq = ++loading;
    const main = $("dashboard");
    main.dataset.state = "loading";
    $("status").textContent = "loading…";
    const untilMs = Date.now();
    const since = new Date(untilMs - RANGES[$("range").value]).toISOString();
    const until = new Date(untilMs).toISOString();
    try {
      const reps = await Promise.all([report(since, until, ""), report(since, until, "model"), report(since, until, "key"), report(since, until, "region")]);
      if (seq !== loading) return;
      $("error").hidden = true;
      render(...reps);
      main.dataset.since = since;
      main.dataset.until = until;
      main.dataset.state = "ready";
      $("status").textContent = `${int(reps[0].total.requests)} requests, by ${reps[0].interval}, updated ${new Date(untilMs).toLocaleTimeString()}`;
    } catch (e) {
      if (seq !== loading) return;
      $("error").textContent = e.message;
      $("error").hidden = false;
      $("status").textContent = "";
      main.dataset.state = "error";
    }
  }

  $("api-key").value = localStorage.getItem(KEY) || "";
  if (RANGES[localStorage.getItem(RANGE)]) $("range").value = localStorage.getItem(RANGE);
  $("api-key").addEventListener("change", () => { localStorage.setItem(KEY, $("api-key").value.trim()); load(); });
  $("range").addEventListener("change", () => { localStorage.setItem(RANGE, $("range").value); load(); });
  $("refresh").addEventListener("click", load);
  load();
})();
