"""Golden Idefics2 vision position buckets from transformers (run by hand; torch 2.15, transformers 5.24).

For every real-patch count nb in 1..side (side = image_size // patch_size: 70 for idefics2-8b, and
the tiny fixture's 4), records the bucket index of each patch row/column exactly as
Idefics2VisionEmbeddings.forward computes it (float32 fractional coordinates, clamp, bucketize
against arange(1/side, 1, 1/side)). Output: Tests/Fixtures/golden/position_buckets.json
"""
import json, sys
import torch, transformers
assert torch.__version__.startswith("2.15"), torch.__version__
assert transformers.__version__.startswith("5.24"), transformers.__version__
from transformers.models.idefics2.modeling_idefics2 import Idefics2VisionEmbeddings
from transformers.models.idefics2.configuration_idefics2 import Idefics2VisionConfig

out = {"torch": torch.__version__, "transformers": transformers.__version__, "sides": {}}
for image_size, patch in [(980, 14), (56, 14)]:
    cfg = Idefics2VisionConfig(hidden_size=8, image_size=image_size, patch_size=patch, num_attention_heads=1)
    emb = Idefics2VisionEmbeddings(cfg)
    side = image_size // patch
    captured = {}
    orig = emb.position_embedding.forward
    emb.position_embedding.forward = lambda ids: (captured.__setitem__("ids", ids.clone()), orig(ids))[1]
    rows = {}
    for nb in range(1, side + 1):
        # one image of nb × side real patches (mask: first nb rows real) and side × nb
        mask = torch.zeros(1, side, side, dtype=torch.bool); mask[0, :nb, :] = True
        emb(torch.zeros(1, 3, side * patch, side * patch), mask)
        ids = captured["ids"].view(side, side)
        rows[nb] = [int(ids[i, 0]) // side for i in range(nb)]
    out["sides"][str(side)] = rows
json.dump(out, open(sys.argv[1] if len(sys.argv) > 1 else "Tests/Fixtures/golden/position_buckets.json", "w"))
print("ok")
