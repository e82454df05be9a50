#!/usr/bin/env python3
"""Records what llama.cpp computes on a synthetic model that a test writes (internal/synthmodels):
tiny-mixtral-ref.json (model/mixtral_test.go), tiny-gemma3-ref.json (model/gemma3_test.go), tiny-qwen2vl-ref.json
(model/qwen2vl_test.go) and, for cmd/stepflash/vision_refs_test.go, cmd/stepflash/testdata/tiny-gemma3-vlm-ref.json,
tiny-qwen25vl-ref.json and tiny-qwen2vl-vlm-ref.json.
Every llama-server below also had -nr --no-webui (-nr: the AMX kernels die with SIGILL in the sandbox; F32 weights are
not repacked anyway).

    STEPFLASH_WRITE_MIXTRAL=/tmp/tiny-mixtral-F32.gguf go test ./model -run Mixtral   # writes the model (then fails if the ref is stale)
    llama-server -m /tmp/tiny-mixtral-F32.gguf -t 2 -tb 2 -c 1024 -np 1 -fa off -ctk f32 -ctv f32 --seed 42 --port 8097 &
    python3 gen_synthetic_ref.py /tmp/tiny-mixtral-F32.gguf http://127.0.0.1:8097 > tiny-mixtral-ref.json

    STEPFLASH_WRITE_GEMMA3=/tmp/tiny-gemma3-F32.gguf go test ./model -run Gemma3Refs
    llama-server -m /tmp/tiny-gemma3-F32.gguf -t 2 -tb 2 -c 1024 -np 1 -fa off -ctk f32 -ctv f32 --seed 42 --port 8097 &
    python3 gen_synthetic_ref.py /tmp/tiny-gemma3-F32.gguf http://127.0.0.1:8097 tiny-qwen3-F32.json > tiny-gemma3-ref.json

    STEPFLASH_WRITE_QWEN2VL=/tmp/tiny-qwen2vl-F32.gguf go test ./model -run Qwen2VLRefs
    llama-server -m /tmp/tiny-qwen2vl-F32.gguf -t 2 -tb 2 -c 1024 -np 1 -fa off -ctk f32 -ctv f32 --seed 42 --port 8097 &
    python3 gen_synthetic_ref.py /tmp/tiny-qwen2vl-F32.gguf http://127.0.0.1:8097 tiny-qwen3-F32.json > tiny-qwen2vl-ref.json

(tiny-qwen2vl's vocabulary is tiny-vlm-text's, whose first 1024 gpt-2 tokens hold tiny-qwen3's 1023: its prompts fit,
while tiny-vlm-text-F32.json's cases are image cases this text path cannot send.)

    STEPFLASH_WRITE_GEMMA3_VLM=/tmp/g3 go test ./cmd/stepflash -run RunVisionRefs/gemma3   # writes both files into /tmp/g3
    LLAMA_MEDIA_MARKER='<__media__>' llama-server -m /tmp/g3/tiny-gemma3-F32.gguf --mmproj /tmp/g3/tiny-gemma3-mmproj-F32.gguf \
        -t 2 -tb 2 -c 1024 -np 1 -fa off -ctk f32 -ctv f32 --seed 42 --port 8097 &
    python3 gen_synthetic_ref.py /tmp/g3/tiny-gemma3-F32.gguf http://127.0.0.1:8097 --mmproj /tmp/g3/tiny-gemma3-mmproj-F32.gguf \
        ../../../shared/models/test-image-quadrants-64.png ../../cmd/stepflash/testdata/bands-48x20.png \
        > ../../cmd/stepflash/testdata/tiny-gemma3-vlm-ref.json

The Qwen-VL pairs the same way (STEPFLASH_WRITE_QWEN25VL=/tmp/q25 ... -run RunVisionRefs/qwen2.5vl writes
tiny-qwen2vl-F32.gguf and tiny-qwen25vl-mmproj-F32.gguf into /tmp/q25, the ref into tiny-qwen25vl-ref.json;
STEPFLASH_WRITE_QWEN2VL=/tmp/q2 ... -run 'RunVisionRefs/qwen2vl$' writes tiny-qwen2vl-mmproj-F32.gguf beside the same
text model, the ref into tiny-qwen2vl-vlm-ref.json), with the same llama-server flags and the same two images, and
REF_OPTS=--two in the script's environment for a fifth case with both images in one prompt.

cmd/stepflash/testdata/bands-48x20.png is a 48x20 RGB PNG written once with Go's image/png: four 12-pixel-wide
bands (220,30,30), (30,200,40), (20,40,230), (240,220,20) left to right in rows 0-9, the same bands right to left in
rows 10-19 (a non-square image, so that the letterbox is exercised).

The prompts are those of ../shared/models/refs/<third argument> (default tiny-qwen3moe-F32.json); same request settings as
those refs (greedy, n_probs 5, pre-sampling log-probs, F32 KV, no flash attention).
"""
import base64, hashlib, json, math, os, sys, urllib.request

model, base = sys.argv[1], sys.argv[2]
if len(sys.argv) > 4 and sys.argv[3] == "--mmproj":
    # Image cases: each image with each prompt (<__media__> where it goes);
    # the server runs with --mmproj and LLAMA_MEDIA_MARKER='<__media__>'.
    mmproj, images = sys.argv[4], sys.argv[5:]
    prompts = ["User: <__media__> Describe the image.", "<__media__>What colour is the top left corner?"]
    todo = [{"name": f"{os.path.basename(im)}/{i}", "prompt": p, "image": im} for im in images for i, p in enumerate(prompts)]
    if "--two" in os.environ.get("REF_OPTS", ""):
        # Two images in one prompt, text between them (REF_OPTS=--two; the
        # Qwen-VL refs have it: the positions after each image move on).
        todo.append({"name": "two", "prompt": "User: <__media__> then <__media__> Describe both.", "images": images[:2]})
    n_predict = 16
else:
    mmproj = None
    prompts = sys.argv[3] if len(sys.argv) > 3 else "tiny-qwen3moe-F32.json"
    todo = json.load(open(__file__.rsplit("/", 1)[0] + "/../../../shared/models/refs/" + prompts))["runs"][0]["cases"]
    n_predict = 24

def post(path, body):
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))

cases = []
for c in todo:
    prompt = c["prompt"]
    if "image" in c or "images" in c:
        ids = None  # the server does not tokenize images; the test checks the count of positions instead
        prompt = {"prompt_string": c["prompt"], "multimodal_data": [base64.b64encode(open(im, "rb").read()).decode()
                                                                    for im in c.get("images", [c.get("image")])]}
    else:
        ids = post("/tokenize", {"content": c["prompt"], "add_special": True, "parse_special": True})["tokens"]
    r = post("/completion", {"prompt": prompt, "n_predict": n_predict, "temperature": 0.0, "top_k": 1, "top_p": 1.0,
                             "min_p": 0.0, "repeat_penalty": 1.0, "seed": 42, "n_probs": 5, "post_sampling_probs": False,
                             "return_tokens": True, "cache_prompt": False})
    steps, margins = [], []
    for p in r["completion_probabilities"]:
        top = [{"id": t["id"], "logprob": t["logprob"]} for t in p["top_logprobs"]]
        steps.append({"id": p["id"], "top": top})
        margins.append(top[0]["logprob"] - top[1]["logprob"])
    case = {"name": c["name"], "prompt": c["prompt"], "prompt_token_ids": ids, "generated_token_ids": r["tokens"],
            "steps": steps, "margins": margins}
    if "image" in c:
        case["image"] = os.path.basename(c["image"])
    if "images" in c:
        case["images"] = [os.path.basename(im) for im in c["images"]]
    if ids is None:
        case["prompt_positions"] = r["timings"]["prompt_n"]
    cases.append(case)
sha = lambda f: hashlib.sha256(open(f, "rb").read()).hexdigest()
print(json.dumps({"model_sha256": sha(model), **({"mmproj_sha256": sha(mmproj)} if mmproj else {}),
                  "llama_cpp_commit": "1fd6dfe9f3d4b69cce101d832339fbda2d14b056",
                  "server_flags": "-t 2 -tb 2 -c 1024 -np 1 -fa off -ctk f32 -ctv f32 --seed 42",
                  "cases": cases}, indent=1))
