#!/usr/bin/env python3
"""Image goldens for I2QImage: PNG/JPEG decoding as Pillow does it and transformers'
Idefics2ImageProcessorPil (the PIL path), written under Tests/Fixtures/images.

Run by hand (NOT in CI), from the repository root, with the pinned venv:

    /work/venv/bin/python scripts/make_image_goldens.py [--make-images] [--out Tests/Fixtures/images]
    /work/venv/bin/python scripts/make_image_goldens.py --survey OUT.json DIR [DIR ...]

--make-images   (re)build the input images first: copies of real images from the Rust toolchain's
                HTML documentation (found with `rustc --print sysroot`, or --rust-docs DIR) and
                synthetic ones drawn here with Pillow (document pages with real prose from
                /usr/share/common-licenses, a tiny image, a wide palette image, 16-bit and
                gray+alpha PNGs written by a small PNG writer below, CMYK and gray JPEGs).
                Without it, the goldens are recomputed from the images already in --out.
--survey        no goldens: decode every PNG/JPEG under the directories with Pillow and write
                {path: {"ok", "error", "width", "height", "xxh3_rgb", "xxh3_load_image" and
                "xxh3_idefics2_processor_input" or "load_image_error"}} (convert_to_rgb, load_image,
                and load_image followed by convert_to_rgb as under Idefics2Processor) for
                its pixel hashes (a one-off survey: 5,382 real files matched Pillow when it was run; the opt-in Swift test was removed so CI has no skipped test).

Versions are pinned and asserted below (Pillow decides decoding and the BILINEAR resize,
transformers the processor, numpy the float arithmetic). A rerun rewrites identical files.

What it writes (into --out):
    *.png, *.jpg        the input images (only with --make-images)
    images.json         per image: Pillow's mode, transparency, size, XXH3-64 of the decoded pixels
                        (convert("RGBA") when transparent else convert("RGB")), of
                        convert_to_rgb's output, of load_image's and of
                        load_image + convert_to_rgb (Idefics2Processor's path); per processor case: shapes, XXH3-64 of the whole
                        float32 pixel_values and uint8 mask, per image slot its real size and the
                        XXH3-64 of the resized uint8 image; the float32 value table; the corrupt-file
                        cases with Pillow's outcome
    processor.safetensors
                        full arrays for the small cases, as the uint8 image that entered
                        rescale/normalize: "<image>/c/resized" ([1,3,H,W]), "<image>/d/resized"
                        ([5,3,H,W], some images), "batch_small/resized" ([2,10,3,H,W]) and its
                        "batch_small/pixel_attention_mask" (uint8). Padding is 0. The value table
                        (images.json) maps them to transformers' float32 pixel_values exactly
                        (asserted for every case here), and the XXH3-64 of every case's whole float32
                        pixel_values is recorded too.

Cases (size = {"longest_edge", "shortest_edge"}):
    a  980/378, no splitting       b  980/378, splitting
    c  56/28, no splitting         d  56/28, splitting
    (a-d open the image with Image.open, so the image processor's convert_to_rgb composites alpha)
    e  980/378, splitting, through load_image first as Idefics2Processor does (EXIF orientation,
       transparency dropped) - only for images where that differs
    batch_small  [[tiny, wide palette], [gray page]] at 56/28 with splitting (padding + empty slots)
    batch_large  [[tiny, wide palette], [gray page]] at 980/378 without splitting
"""

import argparse
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np

PILLOW_VERSION = "13.0.0"
TRANSFORMERS_VERSION = "5.24.0"
NUMPY_VERSION = "2.4.6"
SAFETENSORS_VERSION = "0.8.0"
XXHASH_VERSION = "4.1.0"

import PIL  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter, ImageFont  # noqa: E402
import safetensors  # noqa: E402
import xxhash  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402
import transformers  # noqa: E402
from transformers.image_transforms import convert_to_rgb  # noqa: E402
from transformers.image_utils import load_image  # noqa: E402
from transformers.models.idefics2.image_processing_pil_idefics2 import Idefics2ImageProcessorPil  # noqa: E402

assert PIL.__version__ == PILLOW_VERSION, f"Pillow {PIL.__version__} != pinned {PILLOW_VERSION}"
assert transformers.__version__.startswith(TRANSFORMERS_VERSION), transformers.__version__
assert np.__version__ == NUMPY_VERSION, np.__version__
assert safetensors.__version__ == SAFETENSORS_VERSION, safetensors.__version__
assert xxhash.VERSION == XXHASH_VERSION, xxhash.VERSION

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Real images (Rust documentation, MIT/Apache-2.0): (name in fixtures, path under share/doc/rust/html)
REAL = [
    ("real_nrf52_memory_map.png", "embedded-book/assets/nrf52-memory-map.png"),  # 1629x927 RGB, wider than 980
    ("real_rustc_image3_trns.png", "rustc/images/image3.png"),  # 870x166 RGB + tRNS
    ("real_cargo_build_info_rgba.png", "cargo/images/build-info.png"),  # 563x398 RGBA
    ("real_cargo_logo_rgba.png", "cargo/images/Cargo-Logo-Small.png"),  # 306x275 RGBA, transparent
    ("real_verify_444.jpg", "embedded-book/assets/verify.jpeg"),  # 720x477 baseline 4:4:4 photo
    ("real_f3_progressive_422.jpg", "embedded-book/assets/f3.jpg"),  # 720x477 progressive 4:2:2 photo
]

CASES = {
    "a": dict(longest_edge=980, shortest_edge=378, split=False),
    "b": dict(longest_edge=980, shortest_edge=378, split=True),
    "c": dict(longest_edge=56, shortest_edge=28, split=False),
    "d": dict(longest_edge=56, shortest_edge=28, split=True),
}
# case d (splitting at 56/28) keeps full arrays only for these; the others have hashes
FULL_SPLIT_ARRAYS = {"tiny_20x13.png", "wide_1400x300_palette_trns.png", "real_rustc_image3_trns.png",
                     "real_verify_444.jpg", "doc_a4_310x438_palette4_interlaced.png", "cmyk_160x120.jpg"}
BATCH_IMAGES = [["tiny_20x13.png", "wide_1400x300_palette_trns.png"], ["doc_a4_620x877_gray.png"]]
BATCH_CASES = {
    "batch_small": dict(longest_edge=56, shortest_edge=28, split=True),
    "batch_large": dict(longest_edge=980, shortest_edge=378, split=False),
}


def xxh3(a) -> str:
    """XXH3-64 (seed 0) of the bytes, 16 hex digits (I2QCore's XXH3.hex)."""
    if isinstance(a, np.ndarray):
        a = np.ascontiguousarray(a).tobytes()
    return xxhash.xxh3_64_hexdigest(a)


# ----------------------------------------------------------------------------------------------
# A minimal PNG writer (Pillow cannot write 16-bit RGBA, low bit depths with tRNS, or Adam7).


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack_rows(samples: np.ndarray, bit_depth: int) -> list:
    """samples: [H, W*channels] integer array -> list of packed row bytes."""
    rows = []
    for r in samples:
        if bit_depth == 16:
            rows.append(r.astype(">u2").tobytes())
        elif bit_depth == 8:
            rows.append(r.astype(np.uint8).tobytes())
        else:
            per = 8 // bit_depth
            out = bytearray((len(r) * bit_depth + 7) // 8)
            for i, v in enumerate(r):
                out[i // per] |= int(v) << (8 - bit_depth * (i % per + 1))
            rows.append(bytes(out))
    return rows


def write_png(path, samples, bit_depth, color_type, plte=None, trns=None, interlace=False):
    """samples: [H, W, channels] integers. Filter type 1 (Sub) on every row, Adam7 if asked."""
    h, w, ch = samples.shape
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0)
    bpp = max(1, ch * bit_depth // 8)

    def encode(img):
        raw = bytearray()
        for row in pack_rows(img.reshape(img.shape[0], -1), bit_depth):
            filtered = bytearray(row)
            for i in range(len(row) - 1, bpp - 1, -1):
                filtered[i] = (row[i] - row[i - bpp]) & 0xFF
            raw += b"\x01" + filtered
        return bytes(raw)

    if interlace:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        data = b""
        for x0, y0, dx, dy in passes:
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                data += encode(sub)
    else:
        data = encode(samples)
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
    if plte is not None:
        out += png_chunk(b"PLTE", bytes(plte))
    if trns is not None:
        out += png_chunk(b"tRNS", bytes(trns))
    out += png_chunk(b"IDAT", zlib.compress(data, 9)) + png_chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(out)


# ----------------------------------------------------------------------------------------------
# Input images


def rust_docs_dir(arg):
    if arg:
        return arg
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True, check=True).stdout.strip()
    return os.path.join(sysroot, "share", "doc", "rust", "html")


def document_page(width=1240, height=1754):
    """A text page like a 150-dpi A4 scan: real prose (Apache-2.0 licence text), a heading, a table."""
    page = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    with open("/usr/share/common-licenses/Apache-2.0", encoding="utf-8") as f:
        prose = [line.rstrip() for line in f.read().splitlines()]
    title = ImageFont.load_default(size=40)
    body = ImageFont.load_default(size=21)
    draw.text((110, 90), "Apache License 2.0 - annotated copy", font=title, fill=(20, 20, 60))
    draw.line((110, 150, width - 110, 150), fill=(40, 40, 40), width=3)
    y = 180
    for line in prose[:40]:
        draw.text((110, y), line[:95], font=body, fill=(10, 10, 10))
        y += 30
    # a small table with a coloured header row
    top = y + 30
    cols = [110, 430, 750, width - 110]
    draw.rectangle((cols[0], top, cols[-1], top + 44), fill=(200, 220, 245))
    for r in range(6):
        draw.line((cols[0], top + r * 44, cols[-1], top + r * 44), fill=(0, 0, 0), width=2)
    for c in cols:
        draw.line((c, top, c, top + 5 * 44), fill=(0, 0, 0), width=2)
    for r, row in enumerate([("Section", "Topic", "Page"), ("1", "Definitions", "1"), ("2", "Copyright", "2"),
                             ("3", "Patent", "2"), ("4", "Redistribution", "3")]):
        for c, cell in enumerate(row):
            draw.text((cols[c] + 12, top + r * 44 + 10), cell, font=body, fill=(0, 0, 0))
    y = top + 5 * 44 + 40
    for line in prose[40:70]:
        draw.text((110, y), line[:95], font=body, fill=(10, 10, 10))
        y += 30
    draw.text((width // 2 - 20, height - 80), "- 1 -", font=body, fill=(60, 60, 60))
    return page


def scanned(page, seed):
    """Scanner look: a slight rotation, blur and sensor noise (seeded)."""
    rng = np.random.default_rng(seed)
    img = page.rotate(0.35, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))
    img = img.filter(ImageFilter.GaussianBlur(0.6))
    a = np.asarray(img).astype(np.int16)
    a = a + rng.normal(0, 4, a.shape[:2])[..., None].round().astype(np.int16)
    a[..., 0] += 2  # slightly warm paper
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def make_images(out, docs):
    os.makedirs(out, exist_ok=True)
    for name, rel in REAL:
        shutil.copyfile(os.path.join(docs, rel), os.path.join(out, name))

    page = document_page()
    scan = scanned(page, seed=5)
    scan.save(os.path.join(out, "doc_a4_1240x1754_420.jpg"), quality=70, subsampling=2)
    page.filter(ImageFilter.GaussianBlur(0.5)).resize((620, 877), Image.Resampling.LANCZOS).convert("L").save(
        os.path.join(out, "doc_a4_620x877_gray.png"), optimize=True)
    scan.resize((827, 1169), Image.Resampling.LANCZOS).save(os.path.join(out, "doc_a4_827x1169_progressive_444.jpg"),
                                                            quality=80, subsampling=0, progressive=True)
    # 4-bit palette, Adam7-interlaced (written by the PNG writer above)
    small = page.resize((310, 438), Image.Resampling.LANCZOS).quantize(colors=16, method=Image.Quantize.MEDIANCUT,
                                                                        dither=Image.Dither.NONE)
    pal = small.getpalette()[: 16 * 3]
    write_png(os.path.join(out, "doc_a4_310x438_palette4_interlaced.png"), np.asarray(small)[..., None], 4, 3,
              plte=pal, interlace=True)

    # tall and narrow (a receipt), odd size, 4:2:0: Pillow resizes it vertical pass first
    receipt = Image.new("RGB", (201, 1501), (250, 250, 244))
    d = ImageDraw.Draw(receipt)
    small_font = ImageFont.load_default(size=15)
    with open("/usr/share/common-licenses/Apache-2.0", encoding="utf-8") as f:
        words = f.read().split()
    for i in range(70):
        d.text((8, 10 + i * 21), " ".join(words[i * 3:i * 3 + 3])[:17], font=small_font, fill=(25, 25, 25))
        d.text((160, 10 + i * 21), f"{(i * 7919) % 1000 / 100:5.2f}", font=small_font, fill=(25, 25, 25))
    scanned(receipt, seed=9).save(os.path.join(out, "receipt_201x1501_420.jpg"), quality=75, subsampling=2)

    rng = np.random.default_rng(20)
    tiny = rng.integers(0, 256, (13, 20, 3), dtype=np.uint8)
    Image.fromarray(tiny, "RGB").save(os.path.join(out, "tiny_20x13.png"))

    # wider than 980: a banner chart on a transparent background, 8-bit palette with tRNS
    wide = Image.new("RGB", (1400, 300), (255, 0, 255))
    d = ImageDraw.Draw(wide)
    font = ImageFont.load_default(size=28)
    for i in range(12):
        hgt = 40 + (i * 37) % 200
        d.rectangle((60 + i * 110, 260 - hgt, 140 + i * 110, 260), fill=(30 + i * 18, 90, 200 - i * 12))
        d.text((70 + i * 110, 265), f"Q{i + 1}", font=font, fill=(0, 0, 0))
    d.text((60, 10), "Quarterly throughput (tokens/s)", font=font, fill=(0, 0, 0))
    wide_p = wide.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    magenta = wide_p.palette.getcolor((255, 0, 255))
    wide_p.save(os.path.join(out, "wide_1400x300_palette_trns.png"), transparency=magenta)

    # 16-bit gray: values around the 255 boundary Pillow clips at (I;16 -> RGB clips, not scales)
    yy, xx = np.mgrid[0:200, 0:300]
    g16 = ((xx * 3 + yy) % 1024).astype(np.uint16)
    write_png(os.path.join(out, "gray16_300x200.png"), g16[..., None], 16, 0)
    # 16-bit RGBA with an alpha gradient
    rgba16 = np.zeros((48, 64, 4), dtype=np.uint16)
    rgba16[..., 0] = np.linspace(0, 65535, 64, dtype=np.uint16)[None, :]
    rgba16[..., 1] = np.linspace(65535, 0, 48, dtype=np.uint16)[:, None]
    rgba16[..., 2] = 40000
    rgba16[..., 3] = (xx[:48, :64] * 1024 + yy[:48, :64] * 300).clip(0, 65535)
    write_png(os.path.join(out, "rgba16_64x48.png"), rgba16, 16, 6)
    # 16-bit RGB with tRNS (Pillow compares the tRNS value's low byte with the 8-bit pixel)
    rgb16 = rng.integers(0, 4, (30, 40, 3)).astype(np.uint16) * 0x1111
    write_png(os.path.join(out, "rgb16_trns_40x30.png"), rgb16, 16, 2, trns=struct.pack(">HHH", 0x1111, 0x2222, 0x3333))
    # 2-bit gray with tRNS (Pillow compares the raw tRNS value with the scaled 8-bit pixel)
    g2 = rng.integers(0, 4, (40, 50, 1))
    write_png(os.path.join(out, "gray2_trns_50x40.png"), g2, 2, 0, trns=struct.pack(">H", 0))
    # gray + alpha, 8-bit, interlaced
    la = np.zeros((150, 200, 2), dtype=np.uint8)
    la[..., 0] = (np.mgrid[0:150, 0:200][1] * 255 // 199).astype(np.uint8)
    la[..., 1] = (np.mgrid[0:150, 0:200][0] * 255 // 149).astype(np.uint8)
    write_png(os.path.join(out, "gray_alpha_200x150_interlaced.png"), la, 8, 4, interlace=True)
    # EXIF / XMP orientation (applied by load_image, i.e. by Idefics2Processor, not by the image
    # processor called directly)
    photo = Image.open(os.path.join(out, "real_verify_444.jpg")).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    photo.resize((160, 120), Image.Resampling.LANCZOS).save(os.path.join(out, "photo_exif6_160x120.jpg"), quality=85,
                                                             exif=exif.tobytes())
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="8"/></rdf:RDF></x:xmpmeta>')
    photo.resize((120, 90), Image.Resampling.LANCZOS).save(os.path.join(out, "photo_xmp8_120x90.jpg"), quality=85,
                                                            xmp=xmp)
    logo = Image.open(os.path.join(out, "real_cargo_logo_rgba.png")).resize((64, 40), Image.Resampling.LANCZOS)
    exif3 = Image.Exif()
    exif3[0x0112] = 3
    logo.save(os.path.join(out, "rgba_exif3_64x40.png"), exif=exif3.tobytes())
    # CMYK JPEG (Pillow writes Adobe-convention inverted CMYK) and a gray JPEG
    photo = Image.open(os.path.join(out, "real_verify_444.jpg")).convert("RGB")
    photo.resize((160, 120), Image.Resampling.LANCZOS).convert("CMYK").save(os.path.join(out, "cmyk_160x120.jpg"),
                                                                           quality=85)
    photo.resize((240, 180), Image.Resampling.LANCZOS).convert("L").save(os.path.join(out, "gray_240x180.jpg"),
                                                                        quality=85)


# ----------------------------------------------------------------------------------------------
# Goldens


def pil_decode(path):
    with Image.open(path) as im:
        has_alpha = "A" in im.getbands() or im.info.get("transparency") is not None
        mode = im.mode
        pre = np.asarray(im.convert("RGBA") if has_alpha else im.convert("RGB"))
    with Image.open(path) as im:
        rgb = convert_to_rgb(im, return_numpy=True)
    loaded_im = load_image(path)
    loaded = np.asarray(loaded_im)
    proc_input = convert_to_rgb(loaded_im, return_numpy=True)  # what Idefics2Processor's image processor sees
    return mode, has_alpha, pre, rgb, loaded, proc_input


def value_table(proc):
    """uint8 -> float32 through the processor's own rescale and normalize, per channel."""
    x = np.tile(np.arange(256, dtype=np.uint8)[None, None, :], (3, 1, 1))
    y = proc.normalize(proc.rescale(x, proc.rescale_factor), proc.image_mean, proc.image_std)
    assert y.dtype == np.float32
    table = y[:, 0, :]
    assert np.all(np.diff(table, axis=1) > 0), "value table must be strictly increasing"
    return table


def run_case(paths, longest, shortest, split, via_load_image=False):
    proc = Idefics2ImageProcessorPil(do_image_splitting=split, size={"longest_edge": longest, "shortest_edge": shortest})
    # Image.open: the image processor's own convert_to_rgb; load_image: what Idefics2Processor does first
    opener = load_image if via_load_image else Image.open
    images = [[opener(p) for p in sample] for sample in paths]
    out = proc(images=images, return_tensors="np")
    pv, mask = out["pixel_values"], out["pixel_attention_mask"]
    assert pv.dtype == np.float32 and pv.ndim == 5, (pv.dtype, pv.shape)
    table = value_table(proc)
    b, n, c, h, w = pv.shape
    resized = np.zeros((b, n, 3, h, w), dtype=np.uint8)
    slots = []
    for i in range(b):
        row = []
        for j in range(n):
            m = mask[i, j]
            hh, ww = int(m.any(axis=1).sum()), int(m.any(axis=0).sum())
            assert m[:hh, :ww].all() and m.sum() == hh * ww, "mask is not a top-left rectangle"
            region = pv[i, j, :, :hh, :ww]
            u8 = np.stack([np.searchsorted(table[ch], region[ch]) for ch in range(3)]).astype(np.uint8)
            for ch in range(3):
                assert np.array_equal(table[ch][u8[ch]], region[ch]), "pixel_values are not table[u8]"
            assert not pv[i, j, :, hh:, :].any() and not pv[i, j, :, :, ww:].any(), "padding is not zero"
            resized[i, j, :, :hh, :ww] = u8
            row.append({"height": hh, "width": ww, "xxh3_resized_u8_chw": xxh3(u8) if hh else None})
        slots.append(row)
    info = {
        "longest_edge": longest, "shortest_edge": shortest, "do_image_splitting": split,
        "pixel_values_shape": list(pv.shape), "pixel_attention_mask_shape": list(mask.shape),
        "xxh3_pixel_values_f32": xxh3(pv.astype("<f4")),
        "xxh3_pixel_attention_mask_u8": xxh3(mask.astype(np.uint8)),
        "min": float(pv.min()), "max": float(pv.max()), "sum": float(pv.astype(np.float64).sum()),
        "slots": slots,
    }
    return info, pv, mask, resized, table


CORRUPTIONS = {
    # name: list of (op, argument) - truncate at byte N (negative: from the end), xor a byte, or splice
    # splice: keep N bytes (negative: from the end) then append the given bytes
    "real_rustc_image3_trns.png": [("splice", (-12, b"\x00\x01\x02\x03\xff\xfe!!garbage")),  # no IEND, junk
                                   ("splice", (0, b"\x00" * 100)),  # junk after IEND
                                   ("splice", (-12, struct.pack(">I", 100) + b"tEXtabc")),  # cut chunk after IDAT
                                   ("truncate", 0), ("truncate", 7), ("truncate", 20), ("truncate", 33),
                                   ("truncate", 0.5), ("truncate", -12), ("truncate", -1),
                                   ("xor", (18, 0x01)), ("xor", (29, 0xFF)), ("xor", (0.5, 0x5A)),
                                   ("xor", (1, 0x20)), ("xor", (12, 0x01))],
    "doc_a4_310x438_palette4_interlaced.png": [("truncate", 60), ("truncate", 0.3), ("truncate", -13),
                                               ("xor", (0.6, 0x10)), ("xor", (24, 0x07))],
    "real_verify_444.jpg": [("truncate", 2), ("truncate", 3), ("truncate", 200), ("truncate", 0.5), ("truncate", -2),
                            ("truncate", -1), ("xor", (0, 0xFF)), ("xor", (0.5, 0x33)), ("xor", (0.9, 0xFF))],
    "real_f3_progressive_422.jpg": [("truncate", 0.2), ("truncate", -2), ("xor", (0.4, 0x0F))],
    "gray_240x180.jpg": [("truncate", 100), ("truncate", 0.7)],
}


def jpeg_marker_offsets(data):
    """Offsets of SOF and DHT marker segments (for targeted header corruptions)."""
    out = {}
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        out.setdefault(marker, i)
        if marker == 0xDA:
            break
        i += 2 + length
    return out


def corrupt_bytes(data, op, arg):
    n = len(data)
    if op == "truncate":
        cut = int(n * arg) if isinstance(arg, float) else (n + arg if arg < 0 else arg)
        return data[:cut], {"op": "truncate", "length": cut}
    if op == "splice":
        keep, tail = arg
        keep = n + keep if keep <= 0 else keep
        return data[:keep] + tail, {"op": "splice", "keep": keep, "append_hex": tail.hex()}
    offset, mask = arg
    offset = int(n * offset) if isinstance(offset, float) else offset
    b = bytearray(data)
    b[offset] ^= mask
    return bytes(b), {"op": "xor", "offset": offset, "mask": mask}


def pil_outcome(data):
    try:
        with Image.open(io.BytesIO(data)) as im:
            rgb = convert_to_rgb(im, return_numpy=True)
        return {"pil": "ok", "xxh3_rgb": xxh3(rgb), "width": int(rgb.shape[1]), "height": int(rgb.shape[0])}
    except Exception as e:  # noqa: BLE001 - any Pillow failure counts as "error"
        message = re.sub(r" at 0x[0-9a-f]+", "", f"{type(e).__name__}: {e}")  # no addresses: reruns are identical
        return {"pil": "error", "error": message[:200]}


def corruption_cases(out):
    cases = []
    for name, ops in CORRUPTIONS.items():
        with open(os.path.join(out, name), "rb") as f:
            data = f.read()
        ops = list(ops)
        if name.endswith(".jpg"):
            marks = jpeg_marker_offsets(data)
            sof = marks.get(0xC0, marks.get(0xC2))
            if sof is not None:
                ops += [("xor", (sof + 5, 0xFF)), ("xor", (sof + 9, 0x07))]  # height high byte, component count
            if 0xC4 in marks:
                ops += [("xor", (marks[0xC4] + 5, 0xFF))]  # a Huffman table count
        for op, arg in ops:
            bad, desc = corrupt_bytes(data, op, arg)
            desc.update({"source": name}, **pil_outcome(bad))
            cases.append(desc)
    return cases


def goldens(out):
    names = sorted(f for f in os.listdir(out) if f.endswith((".png", ".jpg")))
    doc = {"versions": {"pillow": PILLOW_VERSION, "transformers": TRANSFORMERS_VERSION, "numpy": NUMPY_VERSION},
           "images": {}, "batches": {}}
    tensors = {}
    for name in names:
        path = os.path.join(out, name)
        mode, has_alpha, pre, rgb, loaded, proc_input = pil_decode(path)
        entry = {
            "file_xxh3": xxh3(open(path, "rb").read()),
            "pil_mode": mode, "has_alpha": has_alpha, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
            "xxh3_decoded": xxh3(pre), "decoded_channels": int(pre.shape[2]), "xxh3_rgb": xxh3(rgb),
            "xxh3_load_image": xxh3(loaded), "load_image_width": int(loaded.shape[1]),
            "load_image_height": int(loaded.shape[0]), "xxh3_idefics2_processor_input": xxh3(proc_input),
            "cases": {},
        }
        if not np.array_equal(loaded, rgb):
            # case e: the Idefics2Processor path (load_image first) at 980/378 with splitting
            info, *_ = run_case([[path]], 980, 378, True, via_load_image=True)
            entry["cases"]["e"] = info
        for case, cfg in CASES.items():
            info, pv, mask, resized, table = run_case([[path]], cfg["longest_edge"], cfg["shortest_edge"], cfg["split"])
            entry["cases"][case] = info
            if case == "c" or (case == "d" and name in FULL_SPLIT_ARRAYS):
                tensors[f"{name}/{case}/resized"] = np.ascontiguousarray(resized[0])
            doc["value_table"] = table.astype(np.float64).tolist()
            doc["value_table_xxh3_f32"] = xxh3(table.astype("<f4"))
        doc["images"][name] = entry
        print(f"{name}: {mode} alpha={has_alpha} {entry['width']}x{entry['height']} "
              f"a={entry['cases']['a']['pixel_values_shape']} b={entry['cases']['b']['pixel_values_shape']}")
    for bname, cfg in BATCH_CASES.items():
        paths = [[os.path.join(out, n) for n in sample] for sample in BATCH_IMAGES]
        info, pv, mask, resized, _ = run_case(paths, cfg["longest_edge"], cfg["shortest_edge"], cfg["split"])
        info["images"] = BATCH_IMAGES
        doc["batches"][bname] = info
        if bname == "batch_small":
            tensors[f"{bname}/resized"] = np.ascontiguousarray(resized)
            tensors[f"{bname}/pixel_attention_mask"] = mask.astype(np.uint8)
        print(f"{bname}: {info['pixel_values_shape']}")
    doc["corruptions"] = corruption_cases(out)
    print(f"{len(doc['corruptions'])} corruption cases, Pillow rejects "
          f"{sum(c['pil'] == 'error' for c in doc['corruptions'])}")
    with open(os.path.join(out, "images.json"), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    save_file(tensors, os.path.join(out, "processor.safetensors"))


def survey(out_json, dirs):
    result = {}
    for d in dirs:
        for root, _, files in os.walk(d):
            for fn in sorted(files):
                if not fn.lower().endswith((".png", ".jpg", ".jpeg")):
                    continue
                p = os.path.join(root, fn)
                with open(p, "rb") as f:
                    head = f.read(8)
                if not (head.startswith(b"\x89PNG\r\n\x1a\n") or head.startswith(b"\xff\xd8\xff")):
                    continue
                try:
                    with Image.open(p) as im:
                        rgb = convert_to_rgb(im, return_numpy=True)
                    result[p] = {"ok": True, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
                                 "xxh3_rgb": xxh3(rgb)}
                except Exception as e:  # noqa: BLE001
                    result[p] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:200]}
                try:
                    loaded = load_image(p)
                    result[p]["xxh3_load_image"] = xxh3(np.asarray(loaded))
                    result[p]["xxh3_idefics2_processor_input"] = xxh3(convert_to_rgb(loaded, return_numpy=True))
                except Exception as e:  # noqa: BLE001
                    result[p]["load_image_error"] = f"{type(e).__name__}: {e}"[:200]
    with open(out_json, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    print(f"{len(result)} files, {sum(not v['ok'] for v in result.values())} rejected by Pillow")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "Tests", "Fixtures", "images"))
    ap.add_argument("--make-images", action="store_true")
    ap.add_argument("--rust-docs", default=None)
    ap.add_argument("--survey", nargs="+", metavar=("OUT.json", "DIR"))
    args = ap.parse_args()
    if args.survey:
        if len(args.survey) < 2:
            sys.exit("--survey needs OUT.json and at least one directory")
        survey(args.survey[0], args.survey[1:])
        return
    if args.make_images:
        make_images(args.out, rust_docs_dir(args.rust_docs))
    goldens(args.out)


if __name__ == "__main__":
    main()
