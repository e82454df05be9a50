#!/usr/bin/env python3
"""Records what llama.cpp computes on a synthetic model that a test of this package writes:
tiny-mixtral-ref.json (model/mixtral_test.go) and tiny-gemma3-ref.json (model/gemma3_test.go).

    STEPFLASH_WRITE_MIXTRAL=/tmp/tiny-mixtral-F32.gguf go test ./model -run Mixtral   # writes the model (then fails if the ref is stale)
    llama-server -m /tmp/tiny-mixtral-F32.gguf -t 2 -tb 2 -c 1024 -np 1 -fa off -ctk f32 -ctv f32 --seed 42 --port 8097 &
    python3 gen_synthetic_ref.py /tmp/tiny-mixtral-F32.gguf http://127.0.0.1:8097 > tiny-mixtral-ref.json

    STEPFLASH_WRITE_GEMMA3=/tmp/tiny-gemma3-F32.gguf go test ./model -run Gemma3Refs
    llama-server -m /tmp/tiny-gemma3-F32.gguf -t 2 -tb 2 -c 1024 -np 1 -fa off -ctk f32 -ctv f32 --seed 42 --port 8097 &
    python3 gen_synthetic_ref.py /tmp/tiny-gemma3-F32.gguf http://127.0.0.1:8097 tiny-qwen3-F32.json > tiny-gemma3-ref.json

The prompts are those of ../shared/models/refs/<third argument> (default tiny-qwen3moe-F32.json); same request settings as
those refs (greedy, n_probs 5, pre-sampling log-probs, F32 KV, no flash attention).
"""
import hashlib, json, math, sys, urllib.request

model, base = sys.argv[1], sys.argv[2]
prompts = sys.argv[3] if len(sys.argv) > 3 else "tiny-qwen3moe-F32.json"
refs = json.load(open(__file__.rsplit("/", 1)[0] + "/../../../shared/models/refs/" + prompts))

def post(path, body):
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))

cases = []
for c in refs["runs"][0]["cases"]:
    ids = post("/tokenize", {"content": c["prompt"], "add_special": True, "parse_special": True})["tokens"]
    r = post("/completion", {"prompt": c["prompt"], "n_predict": 24, "temperature": 0.0, "top_k": 1, "top_p": 1.0,
                             "min_p": 0.0, "repeat_penalty": 1.0, "seed": 42, "n_probs": 5, "post_sampling_probs": False,
                             "return_tokens": True, "cache_prompt": False})
    steps, margins = [], []
    for p in r["completion_probabilities"]:
        top = [{"id": t["id"], "logprob": t["logprob"]} for t in p["top_logprobs"]]
        steps.append({"id": p["id"], "top": top})
        margins.append(top[0]["logprob"] - top[1]["logprob"])
    cases.append({"name": c["name"], "prompt": c["prompt"], "prompt_token_ids": ids, "generated_token_ids": r["tokens"],
                  "steps": steps, "margins": margins})
print(json.dumps({"model_sha256": hashlib.sha256(open(model, "rb").read()).hexdigest(),
                  "llama_cpp_commit": "1fd6dfe9f3d4b69cce101d832339fbda2d14b056",
                  "server_flags": "-t 2 -tb 2 -c 1024 -np 1 -fa off -ctk f32 -ctv f32 --seed 42",
                  "cases": cases}, indent=1))
