"""A 2-layer slice of Idefics2-8B's text model at its real width (Mistral-7B: hidden 4096,
intermediate 14336, 32 heads, 8 kv heads, vocab 32003), random float32 weights, with the Idefics2
tokenizer — for comparing prefill time per layer with transformers (Benchmarks/prefill_text.sh).

Usage: python Benchmarks/make_mistral_slice.py OUT_DIR [--layers 2]
"""
import argparse, shutil, os
import torch
from transformers import MistralConfig, MistralForCausalLM

ap = argparse.ArgumentParser(); ap.add_argument("out"); ap.add_argument("--layers", type=int, default=2)
a = ap.parse_args()
torch.manual_seed(0)
cfg = MistralConfig(vocab_size=32003, hidden_size=4096, intermediate_size=14336, num_hidden_layers=a.layers,
                    num_attention_heads=32, num_key_value_heads=8, rms_norm_eps=1e-5, sliding_window=4096,
                    max_position_embeddings=32768, tie_word_embeddings=False)
with torch.no_grad():
    m = MistralForCausalLM(cfg).float()
m.save_pretrained(a.out)
here = os.path.dirname(os.path.abspath(__file__))
for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
    shutil.copy(os.path.join(here, "..", "Tests", "Fixtures", "tiny-idefics2-v4", f), a.out)
print("ok", sum(p.numel() for p in m.parameters()))
