"""transformers + bitsandbytes NF4 perplexity of SmolLM2-135M (run by hand; torch 2.15, transformers
5.24, bitsandbytes 0.50.2 on CPU): BitsAndBytesConfig(load_in_4bit, nf4, double quant, compute float32)
on the f32 model made by scripts/get_smollm2.sh; same windows as `i2q perplexity` (GPL-3, ctx 512).

Usage: /work/venv/bin/python scripts/make_smollm2_nf4_golden.py [MODEL_DIR] > Tests/Fixtures/smollm2/nf4_perplexity.json
"""
import sys
import torch, math, json
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
torch.set_num_threads(2)
d = sys.argv[1] if len(sys.argv) > 1 else ".cache/smollm2/SmolLM2-135M-Instruct-f32"
tok = AutoTokenizer.from_pretrained(d)
q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32)
m = AutoModelForCausalLM.from_pretrained(d, quantization_config=q, dtype=torch.float32, device_map="cpu").eval()
ids = tok(open("/usr/share/common-licenses/GPL-3").read())["input_ids"]
ctx = 512; W = len(ids) // ctx
nll = 0.0; n = 0
with torch.inference_mode():
    for w in range(W):
        x = torch.tensor([ids[w*ctx:(w+1)*ctx]])
        logits = m(x).logits.float()[0, :-1]
        lp = torch.log_softmax(logits.double(), -1)
        t = x[0, 1:]
        nll += -lp[torch.arange(ctx-1), t].sum().item(); n += ctx - 1
print(json.dumps({"ppl": math.exp(nll/n), "tokens": len(ids), "windows": W, "ctx": ctx, "quantization": "nf4, blocksize 64, double quant, compute float32", "bitsandbytes": __import__("bitsandbytes").__version__, "transformers": __import__("transformers").__version__}, indent=1))
