# bench-depth.py: the rounds of scripts/bench-depth against running servers.
# usage: bench-depth.py ROUNDS NAME=BASE_URL [NAME=BASE_URL...] -- DEPTH [DEPTH...]
# Prints each measurement as it comes, then per test and engine the median and
# range over the rounds, and each engine's median as a ratio to the last one's.
import json, os, random, statistics, sys, time, urllib.request

args = sys.argv[1:]
sep = args.index("--")
rounds, servers, depths = int(args[0]), [a.split("=", 1) for a in args[1:sep]], [int(d) for d in args[sep + 1:]]
nvocab = int(os.environ.get("NVOCAB", "50304"))  # the model's vocabulary size
rnd = random.Random(1)
ids = lambda n: [rnd.randrange(3, nvocab) for _ in range(n)]
context = ids(max(depths))  # the same cached context for every engine


def post(base, prompt, n):
    body = {"model": names[base], "prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": True, "seed": 42}
    req = urllib.request.Request(base + "/v1/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=7200) as r:
        out = json.load(r)
    if "timings" not in out:
        sys.exit(f"{base}: the response has no timings: {out}")
    return out["timings"]


def model_name(base):
    with urllib.request.urlopen(base + "/v1/models", timeout=60) as r:
        return json.load(r)["data"][0]["id"]


names = {base: model_name(base) for _, base in servers}
results = {}  # (test, engine) -> [tok/s]
for d in sorted(depths):
    for name, base in servers:
        if d > 0:  # fill (or extend) the cached context untimed
            t0 = time.time()
            post(base, context[:d], 1)
            print(f"{name} filled {d} positions in {time.time() - t0:.0f} s", flush=True)
    for r in range(rounds):
        load = open("/proc/loadavg").read().split()[:3]
        print(f"== d{d} round {r + 1} {time.strftime('%H:%M:%S', time.gmtime())} load {' '.join(load)}", flush=True)
        for name, base in servers:
            t = post(base, context[:d] + ids(1), 32)
            tg = (t["predicted_n"] - 1) / t["predicted_ms"] * 1e3
            t = post(base, context[:d] + ids(512), 1)
            pp = t["prompt_n"] / t["prompt_ms"] * 1e3
            print(f"{name} tg32 @ d{d} {tg:.2f}  pp512 @ d{d} {pp:.2f} (prompt_n {t['prompt_n']}, cache_n {t['cache_n']})", flush=True)
            results.setdefault((f"tg32 @ d{d}", name), []).append(tg)
            results.setdefault((f"pp512 @ d{d}", name), []).append(pp)

print("\n| test | " + " | ".join(f"{n} tok/s, median (range)" for n, _ in servers) + " | ratio |")
print("|---|" + "---|" * (len(servers) + 1))
for d in sorted(depths):
    for test in (f"pp512 @ d{d}", f"tg32 @ d{d}"):
        cells, meds = [], []
        for name, _ in servers:
            v = results[(test, name)]
            meds.append(statistics.median(v))
            cells.append(f"{meds[-1]:.2f} ({min(v):.2f}..{max(v):.2f})")
        print(f"| {test} | " + " | ".join(cells) + f" | {meds[0] / meds[-1]:.2f}× |")
