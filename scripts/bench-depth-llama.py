# bench-depth-llama.py: one depth measurement against a running llama-server (see bench-depth).
# usage: bench-depth-llama.py PORT SEED D [D...]
import json, random, sys, urllib.request
port=int(sys.argv[1]); rnd=random.Random(int(sys.argv[2]))
def post(body):
    req=urllib.request.Request(f'http://127.0.0.1:{port}/completion',data=json.dumps(body).encode(),headers={'Content-Type':'application/json'})
    return json.load(urllib.request.urlopen(req,timeout=3000))
nv=int(__import__("os").environ.get("NVOCAB", "50304"))  # the model's vocabulary size
ids=lambda n:[rnd.randrange(3,nv) for _ in range(n)]
base={'temperature':0,'top_k':1,'ignore_eos':True,'seed':42}
for D in map(int, sys.argv[3:]):
    d=ids(D)
    if D>0:
        post(dict(base,prompt=d,n_predict=1,cache_prompt=True))      # fill the depth (cached)
    r=post(dict(base,prompt=d+ids(1),n_predict=32,cache_prompt=True)) # 32 generated at depth D
    tg=r['timings']['predicted_per_second']
    r=post(dict(base,prompt=d+ids(512),n_predict=1,cache_prompt=True)) # 512 new at depth D
    t=r['timings']
    print(f"llama-server pp512 @ d{D} {t['prompt_per_second']:.2f} (prompt_n {t['prompt_n']})", flush=True)
    print(f"llama-server tg32 @ d{D} {tg:.2f}", flush=True)
