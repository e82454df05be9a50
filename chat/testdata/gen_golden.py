#!/usr/bin/python3
"""Generate the golden renders the chat package's tests compare against.

The expected outputs are computed independently of the Go code, with Python
Jinja2 configured exactly as Hugging Face transformers configures it for
chat templates (transformers/utils/chat_template_utils.py):
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[loopcontrols, generation tag]), a tojson filter calling
json.dumps(ensure_ascii=False, indent=None, separators=None, sort_keys=False),
and the raise_exception and strftime_now globals. Tool-call arguments given as
JSON strings are parsed into mappings before rendering, as vLLM does.

Regenerate (Debian: apt-get install -y python3-jinja2), from the repository
root:

    /usr/bin/python3 chat/testdata/gen_golden.py

Inputs:  chat/testdata/cases.json (templates x conversations),
         chat/testdata/templates/*.jinja,
         chat/internal/jinja/testdata/cases.json (engine snippets).
Outputs: chat/testdata/golden/<template>__<case>.txt (the render, or for a
         render that raises, "ERROR: <message>"),
         chat/internal/jinja/testdata/golden.json.
"""

import json
import os
import re
import sys
from datetime import datetime

import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
ENGINE = os.path.join(HERE, "..", "internal", "jinja", "testdata")


class GenerationTracker(Extension):
    """{% generation %}...{% endgeneration %} renders its body (transformers'
    AssistantTracker, without the index bookkeeping)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env(now):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return now.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTracker, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


# Same pattern as chat.loopsOverContent.
LOOPS_OVER_CONTENT = re.compile(r"\{%[-+]?\s*for\s+\w+\s+in\s+[^%]*content")


def prepare_message(m, parts_as_list):
    """Mirror chat.Template.Render's conversion of a chat.Message."""
    d = {"role": m["role"]}
    c = m.get("content")
    if isinstance(c, list) and not parts_as_list:
        d["content"] = "\n".join(p["text"] for p in c if p["type"] == "text")
    elif isinstance(c, list):
        parts = []
        for p in c:
            q = {"type": p["type"]}
            if p["type"] == "text":
                q["text"] = p["text"]
            parts.append(q)
        d["content"] = parts
    else:
        d["content"] = c or ""
    if m.get("tool_calls"):
        calls = []
        for tc in m["tool_calls"]:
            args = tc["function"]["arguments"]
            try:
                args = json.loads(args)
            except ValueError:
                pass
            calls.append({"id": tc.get("id", ""), "type": tc.get("type") or "function",
                          "function": {"name": tc["function"]["name"], "arguments": args}})
        d["tool_calls"] = calls
    if m.get("tool_call_id"):
        d["tool_call_id"] = m["tool_call_id"]
    if m.get("name"):
        d["name"] = m["name"]
    if m.get("reasoning_content"):
        d["reasoning_content"] = m["reasoning_content"]
    return d


def prepare_tool(t):
    f = {"name": t["function"]["name"]}
    if t["function"].get("description"):
        f["description"] = t["function"]["description"]
    if "parameters" in t["function"]:
        f["parameters"] = t["function"]["parameters"]
    return {"type": t.get("type") or "function", "function": f}


def render(env, src, variables):
    try:
        return env.from_string(src).render(**variables)
    except jinja2.exceptions.TemplateError as e:  # includes UndefinedError, raise_exception
        return "ERROR: " + str(e)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, ZeroDivisionError) as e:
        return "ERROR: " + str(e)


def chat_goldens():
    spec = json.load(open(os.path.join(HERE, "cases.json"), encoding="utf-8"))
    now = datetime.strptime(spec["now"], "%Y-%m-%dT%H:%M:%SZ")
    env = make_env(now)
    out_dir = os.path.join(HERE, "golden")
    os.makedirs(out_dir, exist_ok=True)
    for old in os.listdir(out_dir):
        os.remove(os.path.join(out_dir, old))
    tools = [prepare_tool(t) for t in spec["tools"]]
    for tname, tspec in sorted(spec["templates"].items()):
        src = open(os.path.join(HERE, "templates", tspec["file"]), encoding="utf-8").read()
        for case in spec["cases"]:
            variables = {"bos_token": tspec["bos"], "eos_token": tspec["eos"]}
            if "enable_thinking" in case:
                variables["enable_thinking"] = case["enable_thinking"]
            variables.update(case.get("extra", {}))
            variables["messages"] = [prepare_message(m, bool(LOOPS_OVER_CONTENT.search(src))) for m in case["messages"]]
            variables["add_generation_prompt"] = case["add_generation_prompt"]
            variables["tools"] = tools if case.get("use_tools") else None
            out = render(env, src, variables)
            path = os.path.join(out_dir, f"{tname}__{case['name']}.txt")
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write(out)


def engine_goldens():
    path = os.path.join(ENGINE, "cases.json")
    if not os.path.exists(path):
        return
    cases = json.load(open(path, encoding="utf-8"))
    env = make_env(datetime(2025, 3, 14, 9, 26, 53))
    golden = {}
    for c in cases:
        if c["name"] in golden:
            sys.exit("duplicate case " + c["name"])
        golden[c["name"]] = render(env, c["template"], c.get("vars", {}))
    with open(os.path.join(ENGINE, "golden.json"), "w", encoding="utf-8", newline="") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    chat_goldens()
    engine_goldens()
