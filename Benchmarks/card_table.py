#!/usr/bin/env python3
"""The Idefics2 model card's memory/time table on the CPU (issue 25, "i2q bench"): one row per model
file (precision / quantization / fusion), each with image splitting on and off; columns peak RSS,
peak anonymous memory, time per generation of the card's snippet, prefill and decode tokens/s, and
an optional accuracy column. Writes OUT/card_table.md, OUT/card_table.json and OUT/card_table.svg.

    python3 Benchmarks/card_table.py --i2q .build/release/i2q --out DIR \
        --row bf16=MODEL_DIR_OR_I2Q [--row nf4=FILE.i2q ...] [--accuracy nf4=0.993 ...] \
        [--images A.png B.png C.png] [--new-tokens 8] [--generations 1] [--title TEXT] [--splitting both|on|off] [--merge EARLIER.json ...]

Standard library only. What one "generation" is: the card's snippet (HuggingFaceM4/idefics2-8b
README, "How to Use", idefics2-8b-base) runs two prompts with three images in one batch,
    "<image>In this image, we can see the city of New York, and more specifically the Statue of
     Liberty.<image>In this image,"   with image1, image2
    "In which city is that bridge located?<image>"                      with image3
and the card times 20 such generations on an H100. Here each generation is the two prompts run one
after the other (`i2q run` has no batching), each as its own process (`--no-verify`; the mapped
weights stay in the page cache between runs), with a fixed number of new tokens (`--ignore-eos`:
synthetic weights never stop). The card's three photos (britannica.com) are not available offline:
pass three local images (default: three docvqa-mini pages).

Measurements, per row and splitting setting, over the generation's two processes:
  peak RSS        max of the processes' ru_maxrss (os.wait4): includes the mapped weight pages the
                  process touched (page cache, shared, reclaimable)
  peak anon       max of RssAnon (/proc/PID/status, sampled every 10 ms): heap and buffers only,
                  what the runtime itself allocates
  s / generation  sum of the two processes' prompt + decode seconds as `i2q run` reports them
                  (tokens / tok/s of its last stderr line); "wall" also counts the process start and
                  model open
  prefill tok/s   prompt tokens of both prompts / their prefill seconds (image decode, vision
                  encoder, connector and the text prefill all count as prefill, as in `i2q run`)
  decode tok/s    new tokens of both / their decode seconds
Image splitting "on" is the model's own processor config (it must say do_image_splitting: true:
checked by the prompt being longer than with splitting off), "off" adds --no-image-splitting.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPTS = [
    ("<image>In this image, we can see the city of New York, and more specifically the Statue of Liberty."
     "<image>In this image,", 2),
    ("In which city is that bridge located?<image>", 1),
]
DEFAULT_IMAGES = [os.path.join(REPO, "Tests", "Fixtures", "docvqa-mini", "documents", n)
                  for n in ("invoice_00.png", "form_01.png", "letter_03.png")]
# The seed's table (HuggingFaceM4/idefics2-8b model card, H100, "Time for 20 generations"), the rows
# without flash attention: (image splitting, row) -> (peak GPU memory GB, seconds for 20 generations).
CARD = {
    (True, "fp32"): (54.9, 55.6), (True, "bf16"): (41.3, 34.3), (True, "fp16"): (36.7, 33.3),
    (True, "bitsandbytes NF4 (entire model)"): (24.7, 40.4), (True, "AWQ (LLM only)"): (26.4, 37.1),
    (True, "AWQ + fusing (LLM only)"): (26.0, 38.4),
    (False, "fp32"): (38.8, 17.5), (False, "bf16"): (22.2, 14.4), (False, "fp16"): (21.3, 13.9),
    (False, "bitsandbytes NF4 (entire model)"): (9.2, 20.9), (False, "AWQ (LLM only)"): (10.9, 15.9),
    (False, "AWQ + fusing (LLM only)"): (10.5, 19.5),
}
STATS = re.compile(r"prompt: (\d+) tokens, ([0-9.]+) tok/s; generated: (\d+) tokens, ([0-9.]+) tok/s")


def rss_anon_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:  # the process has just exited
        pass
    return 0


def run_once(cmd):
    """Runs cmd; returns (stdout, stderr, peak RSS KiB, peak RssAnon KiB, wall s). Raises on failure."""
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:  # files: no pipe to fill up
        t0 = time.time()
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe)
        anon = 0
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            anon = max(anon, rss_anon_kib(p.pid))
            time.sleep(0.01)
        wall = time.time() - t0
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read().decode(), fe.read().decode()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{err[-2000:]}")
    return out, err, ru.ru_maxrss, anon, wall


def generation(i2q, model, images, new_tokens, split):
    g = {"prompt_tokens": 0, "new_tokens": 0, "prefill_s": 0.0, "decode_s": 0.0, "wall_s": 0.0,
         "peak_rss_kib": 0, "peak_anon_kib": 0, "answers": []}
    k = 0
    for prompt, n in PROMPTS:
        cmd = [i2q, "run", model, "--prompt", prompt, "--max-new-tokens", str(new_tokens), "--ignore-eos", "--no-verify"]
        for im in images[k:k + n]:
            cmd += ["--image", im]
        k += n
        if not split:
            cmd.append("--no-image-splitting")
        out, err, rss, anon, wall = run_once(cmd)
        m = STATS.search(err)
        if not m:
            raise SystemExit(f"no timing line in the output of {' '.join(cmd)}:\n{err[-2000:]}")
        pt, pr, nt, dr = int(m.group(1)), float(m.group(2)), int(m.group(3)), float(m.group(4))
        g["prompt_tokens"] += pt
        g["new_tokens"] += nt
        g["prefill_s"] += pt / pr
        g["decode_s"] += nt / dr if dr > 0 else 0.0
        g["wall_s"] += wall
        g["peak_rss_kib"] = max(g["peak_rss_kib"], rss)
        g["peak_anon_kib"] = max(g["peak_anon_kib"], anon)
        g["answers"].append(out.strip())
    return g


def measure(args):
    rows = []
    for spec in args.row:
        name, _, model = spec.partition("=")
        if not model:
            raise SystemExit(f"--row {spec!r}: expected NAME=MODEL")
        for split in {"both": [True, False], "on": [True], "off": [False]}[args.splitting]:
            gens = []
            for _ in range(args.generations):
                gens.append(generation(args.i2q, model, args.images, args.new_tokens, split))
                print(f"{name} split={split}: {gens[-1]['prefill_s'] + gens[-1]['decode_s']:.1f} s, "
                      f"peak RSS {gens[-1]['peak_rss_kib'] / 2**20:.2f} GiB, anon {gens[-1]['peak_anon_kib'] / 2**20:.2f} GiB",
                      file=sys.stderr, flush=True)
            g0 = gens[0]
            per = [g["prefill_s"] + g["decode_s"] for g in gens]
            rows.append({
                "name": name, "model": os.path.abspath(model), "image_splitting": split,
                "generations": len(gens),
                "peak_rss_bytes": max(g["peak_rss_kib"] for g in gens) * 1024,
                "peak_anon_bytes": max(g["peak_anon_kib"] for g in gens) * 1024,
                "seconds_per_generation": sum(per) / len(per),
                "seconds_per_generation_each": [round(s, 3) for s in per],
                "wall_seconds_per_generation": sum(g["wall_s"] for g in gens) / len(gens),
                "prompt_tokens": g0["prompt_tokens"], "new_tokens": g0["new_tokens"],
                "prefill_tok_s": sum(g["prompt_tokens"] for g in gens) / sum(g["prefill_s"] for g in gens),
                "decode_tok_s": sum(g["new_tokens"] for g in gens) / max(sum(g["decode_s"] for g in gens), 1e-9),
                "accuracy": None,
                "load_1min": round(os.getloadavg()[0], 1),
                "answers": g0["answers"],
            })
        if args.splitting == "both" and rows[-2]["prompt_tokens"] == rows[-1]["prompt_tokens"]:
            raise SystemExit(f"{model}: the same prompt length with and without --no-image-splitting: its processor "
                             "config has do_image_splitting false (the 'on' rows need true; --splitting off skips them)")
    return rows


def gib(b):
    return f"{b / 2**30:.3f}"


def secs(x):
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def markdown(doc):
    rows = doc["rows"]
    acc = any(r["accuracy"] is not None for r in rows)
    out = [f"### {doc['title']}", "",
           f"{doc['machine']}; {doc['new_tokens']} new tokens per prompt, {doc['generations']} generation(s) per row; "
           f"images: {', '.join(os.path.basename(i) for i in doc['images'])}.", "",
           "| row | image splitting | peak RSS GiB | peak anon GiB | s / generation | wall s / generation | prompt tokens | prefill tok/s | decode tok/s | load |"
           + (" accuracy |" if acc else ""),
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if acc else "")]
    for r in rows:
        a = f" {r['accuracy']} |" if acc else ""
        if acc and r["accuracy"] is None:
            a = " |"
        out.append(f"| {r['name']} | {'yes' if r['image_splitting'] else 'no'} | {gib(r['peak_rss_bytes'])} | "
                   f"{gib(r['peak_anon_bytes'])} | {secs(r['seconds_per_generation'])} | {secs(r['wall_seconds_per_generation'])} | "
                   f"{r['prompt_tokens']} | {r['prefill_tok_s']:.1f} | {r['decode_tok_s']:.2f} | {r.get('load_1min', '')} |{a}")
    return "\n".join(out) + "\n"


def svg(doc):
    """Two panels of horizontal bars: peak RSS (light) with peak anon (dark) in GiB, and seconds per
    generation; one bar pair per row and splitting setting."""
    rows = doc["rows"]
    bar, gap, left, panel_w, top = 14, 6, 190, 300, 40
    h = top + len(rows) * (bar + gap) + 40
    W = left + 2 * panel_w + 80
    mem_max = max(r["peak_rss_bytes"] for r in rows) / 2**30 or 1
    t_max = max(r["seconds_per_generation"] for r in rows) or 1
    e = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif" font-size="11">',
         f'<rect width="{W}" height="{h}" fill="white"/>',
         f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{doc["title"]}</text>',
         f'<text x="{left}" y="{top - 6}">peak RSS (light) / peak anon (dark), GiB</text>',
         f'<text x="{left + panel_w + 40}" y="{top - 6}">seconds per generation</text>']
    for i, r in enumerate(rows):
        y = top + i * (bar + gap)
        label = f"{r['name']} ({'split' if r['image_splitting'] else 'no split'})"
        e.append(f'<text x="{left - 6}" y="{y + bar - 3}" text-anchor="end">{label}</text>')
        rss, anon = r["peak_rss_bytes"] / 2**30, r["peak_anon_bytes"] / 2**30
        e.append(f'<rect x="{left}" y="{y}" width="{panel_w * rss / mem_max:.1f}" height="{bar}" fill="#9ecae1"/>')
        e.append(f'<rect x="{left}" y="{y + 3}" width="{panel_w * anon / mem_max:.1f}" height="{bar - 6}" fill="#08519c"/>')
        e.append(f'<text x="{left + panel_w * rss / mem_max + 3:.1f}" y="{y + bar - 3}">{rss:.3f}</text>')
        x2 = left + panel_w + 40
        t = r["seconds_per_generation"]
        e.append(f'<rect x="{x2}" y="{y}" width="{panel_w * t / t_max:.1f}" height="{bar}" fill="#fd8d3c"/>')
        e.append(f'<text x="{x2 + panel_w * t / t_max + 3:.1f}" y="{y + bar - 3}">{secs(t)}</text>')
    e.append("</svg>")
    return "\n".join(e) + "\n"


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--i2q", default=os.path.join(REPO, ".build", "release", "i2q"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--row", action="append", default=[], help="NAME=MODEL (HF directory or .i2q)")
    ap.add_argument("--accuracy", action="append", default=[], help="NAME=VALUE or NAME@on=VALUE / NAME@off=VALUE (shown as given; also for --merge rows)")
    ap.add_argument("--images", nargs=3, default=DEFAULT_IMAGES)
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--generations", type=int, default=1)
    ap.add_argument("--title", default="Idefics2 model-card table on the CPU (i2q)")
    ap.add_argument("--splitting", choices=["both", "on", "off"], default="both",
                    help="which settings to run per row (on: the model's processor config must split)")
    ap.add_argument("--merge", nargs="*", default=None, help="JSON files of earlier runs: their rows come first")
    args = ap.parse_args()
    args.acc = dict(a.split("=", 1) for a in args.accuracy)
    for im in args.images:
        if not os.path.isfile(im):
            raise SystemExit(f"missing image {im}")
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for m in args.merge or []:
        with open(m) as f:
            rows += json.load(f)["rows"]
    rows += measure(args)
    for r in rows:  # NAME@on / NAME@off first, then NAME; applies to merged rows too
        key = f"{r['name']}@{'on' if r['image_splitting'] else 'off'}"
        if key in args.acc or r["name"] in args.acc:
            r["accuracy"] = args.acc.get(key, args.acc.get(r["name"]))
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    doc = {"generator": "Benchmarks/card_table.py", "title": args.title, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{cpu}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end",
           "prompts": [p for p, _ in PROMPTS], "images": [os.path.abspath(i) for i in args.images],
           "new_tokens": args.new_tokens, "generations": args.generations, "card_h100_no_flash_attention": [
               {"image_splitting": s, "row": n, "peak_gpu_gb": v[0], "seconds_20_generations": v[1]} for (s, n), v in CARD.items()],
           "rows": rows}
    write(os.path.join(args.out, "card_table.json"), json.dumps(doc, indent=2) + "\n")
    write(os.path.join(args.out, "card_table.md"), markdown(doc))
    write(os.path.join(args.out, "card_table.svg"), svg(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
