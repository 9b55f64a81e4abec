#!/usr/bin/env python3
"""Writes the i2q format's test vectors (Formats/i2q-format.md §8) into Formats/vectors/.

    /work/venv/bin/python scripts/make_format_vectors.py [--out Formats/vectors]

Good vectors (NAME.i2q + NAME.expected.json): minimal, full, reordered.
Bad vectors (bad/NAME.i2q + bad/NAME.why): one broken rule each.
Also Formats/vectors/README.md, which walks through minimal.i2q byte by byte.

Deterministic: builds everything twice and checks the bytes agree, and checks every vector with
the reference reader in scripts/i2q_format.py (good ones accepted with all checksums verified,
bad ones rejected for the stated rule). Needs `xxhash` and `zstandard` (the zstd-compressed
metadata bytes depend on the bundled libzstd version; everything else does not).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import i2q_format as F  # noqa: E402
from i2q_format import Entry, Param, Part, Tensor  # noqa: E402

import zstandard  # noqa: E402

ALIGN = 64


# --------------------------------------------------------------------------------------------
# Contents
# --------------------------------------------------------------------------------------------

def f32(*xs: float) -> bytes:
    return struct.pack(f"<{len(xs)}f", *xs)


def provenance(kind: str = "test-vector", passes: list | None = None, **source) -> dict:
    return {"i2q_version": "0.1.0", "source": {"kind": kind, **source}, "passes": passes or []}


MINIMAL_TENSORS = [Tensor("w", "plain", "F32", [2, 2], [("data", "F32", [2, 2], f32(1.0, -2.0, 0.5, 3.0))])]
MINIMAL_METADATA = {"files": F.files_metadata({"config.json": '{"model_type": "llama"}\n'}),
                    "provenance": provenance()}


def full_tensors() -> list[Tensor]:
    def bf16(x: float) -> bytes:  # these values are exact in bfloat16 (truncation == rounding)
        bits = struct.unpack("<I", struct.pack("<f", x))[0]
        assert bits & 0xFFFF == 0, x
        return struct.pack("<H", bits >> 16)

    f16 = struct.pack("<12e", *[(i - 5) * 0.25 for i in range(12)])
    bf = b"".join(bf16(x) for x in (1.0, -0.5, 3.140625, -0.0))
    i64 = struct.pack("<5q", 0, 1, -1, 2**40, -(2**63))
    boolean = bytes([1, 0, 1, 1, 0, 0])
    scalar = f32(2.5)
    # nf4 with double quantization: n = 4*32 = 128, blocksize 64 -> 2 blocks (absmax U8[2]),
    # nested_blocksize 256 -> 1 nested block (nested_absmax F32[1]).
    packed = bytes((i * 37 + 11) & 0xFF for i in range(64))
    absmax = bytes([200, 17])
    nested_absmax = f32(0.75)
    nested_code = f32(*[(i - 127.5) / 127.5 for i in range(256)])
    nf4_params = [Param("blocksize", F.PARAM_I64, 64), Param("double_quant", F.PARAM_I64, 1),
                  Param("nested_blocksize", F.PARAM_I64, 256), Param("nested_offset", F.PARAM_F64, 0.125),
                  Param("note", F.PARAM_STR, "deterministic test data — not a real quantization")]
    qkv = f32(*[i * 0.5 for i in range(12)])
    attn = "model.layers.0.self_attn."
    return [
        Tensor("model.embed_tokens.weight", "plain", "F16", [3, 4], [("data", "F16", [3, 4], f16)]),
        Tensor("model.norm.weight", "plain", "BF16", [4], [("data", "BF16", [4], bf)]),
        Tensor("position_ids", "plain", "I64", [5], [("data", "I64", [5], i64)]),
        Tensor("attention_mask", "plain", "BOOL", [2, 3], [("data", "BOOL", [2, 3], boolean)]),
        Tensor("logit_scale", "plain", "F32", [], [("data", "F32", [], scalar)]),
        Tensor("empty.bias", "plain", "F32", [0, 3], [("data", "F32", [0, 3], b"")]),
        Tensor("model.layers.0.mlp.down_proj.weight", "nf4", "BF16", [4, 32],
               [("packed", "U8", [64], packed), ("absmax", "U8", [2], absmax),
                ("nested_absmax", "F32", [1], nested_absmax), ("nested_code", "F32", [256], nested_code)],
               params=nf4_params),
        Tensor(attn + "qkv_proj.weight", "plain", "F32", [6, 2], [("data", "F32", [6, 2], qkv)],
               parts=[Part(attn + "q_proj.weight", 0, 2), Part(attn + "k_proj.weight", 2, 2),
                      Part(attn + "v_proj.weight", 4, 2)]),
        Tensor("model.ünïcödé_名前.weight", "plain", "F64", [2],
               [("data", "F64", [2], struct.pack("<2d", 1e-300, -2.5))]),
    ]


FULL_METADATA = {
    "files": F.files_metadata({
        "config.json": '{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "float16"}\n',
        "tokenizer_config.json": '{"bos_token": "<s>", "note": "héllo — 世界"}\n',
        # SentencePiece-like bytes with invalid UTF-8 (0xFF, 0xFE, a lone 0x80, 0xC0 0xC1, 0xF5)
        "tokenizer.model": b"\x0a\x0b\x0a\x05<unk>\x15\x00\x00\x00\x00\x18\x02\xff\xfe\x80\xc0\xc1\xf5\x00",
    }),
    "provenance": provenance(name="full", passes=[
        {"name": "cast", "params": {"dtype": "F16"}, "i2q_version": "0.1.0"},
        {"name": "quantize", "params": {"scheme": "nf4", "blocksize": 64}, "i2q_version": "0.1.0"},
    ]),
}


def nf4_small(dq_type: int = F.PARAM_I64) -> list[Tensor]:
    """A minimal nf4 tensor (n = 64, one block, no double quantization)."""
    return [Tensor("q", "nf4", "F16", [64],
                   [("packed", "U8", [32], bytes(range(32))), ("absmax", "F32", [1], f32(1.5))],
                   params=[Param("blocksize", F.PARAM_I64, 64), Param("double_quant", dq_type, 0)])]


# --------------------------------------------------------------------------------------------
# Building (possibly broken) files
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Parts:
    entries: list[Entry]
    data: bytes
    stored: bytes
    raw_size: int
    alignment: int = ALIGN
    flags: int = 0

    def directory(self) -> bytes:
        return F.encode_directory(self.entries)


def parts_of(tensors=None, metadata=None, *, alignment=ALIGN, compress=False) -> Parts:
    entries, data = F.layout(tensors or MINIMAL_TENSORS, alignment)
    stored, raw = F.encode_metadata(metadata or MINIMAL_METADATA, compress)
    return Parts(entries, data, stored, len(raw), alignment, F.FLAG_ZSTD if compress else 0)


def build(p: Parts, *, order=("data", "metadata", "directory"), data_offset=None, directory=None,
          header_edit=None, rehash=True) -> bytes:
    """Assembles p; header_edit(h) may change header fields, after which header_xxh3 is
    recomputed (unless rehash=False) so that only the intended rule breaks."""
    d = p.directory() if directory is None else directory
    h, out = F.assemble(p.data, p.stored, p.raw_size, d, len(p.entries), alignment=p.alignment,
                        flags=p.flags, order=order, data_offset=data_offset)
    if header_edit:
        header_edit(h)
        if rehash:
            h = h.with_checksum(d)
        out = h.pack() + out[F.HEADER_SIZE:]
    return out


def edit(**fields):
    def f(h):
        for k, v in fields.items():
            setattr(h, k, v(getattr(h, k)) if callable(v) else v)
    return f


def good_vectors() -> dict[str, bytes]:
    return {
        "minimal": F.write_file(MINIMAL_TENSORS, MINIMAL_METADATA, alignment=ALIGN),
        "full": F.write_file(full_tensors(), FULL_METADATA, alignment=ALIGN, compress=True),
        # Same content as minimal, sections in another order (§2: a reader MUST NOT rely on the
        # writer's order): header, metadata, directory, padding, data.
        "reordered": F.write_file(MINIMAL_TENSORS, MINIMAL_METADATA, alignment=ALIGN,
                                  order=("metadata", "directory", "data")),
    }


def bad_vectors() -> list[tuple[str, str, str, bytes]]:
    """(name, reader rule id, why line, bytes). All are minimal.i2q with one thing broken
    (header_xxh3 recomputed unless that is the broken rule)."""
    out = []

    def add(name, rule, why, data):
        out.append((name, rule, why, data))

    minimal = build(parts_of())
    h0 = F.Header.unpack(minimal)

    add("bad_magic", "magic",
        "§3 magic: the file MUST start with `89 49 32 51 0D 0A 1A 0A` (`\\x89I2Q\\r\\n\\x1a\\n`); here byte 1 is 'J'",
        build(parts_of(), header_edit=edit(magic=b"\x89J2Q\r\n\x1a\n")))
    add("version_major_2", "version",
        "§3 version_major: \"1. A reader MUST reject another major version.\" (here 2)",
        build(parts_of(), header_edit=edit(version_major=2)))
    add("unknown_flag_bit", "flags",
        "§3 flags: \"bit 0: metadata is zstd-compressed. Other bits MUST be 0.\" (here bit 1 is set)",
        build(parts_of(), header_edit=edit(flags=0b10)))
    add("truncated", "file_size",
        "§3 file_size: \"MUST equal the file's length (shorter = truncated, longer = trailing data)\" (last byte cut off)",
        minimal[:-1])
    add("trailing_byte", "file_size",
        "§3 file_size: \"MUST equal the file's length (shorter = truncated, longer = trailing data)\" (one 0x00 appended)",
        minimal + b"\x00")
    add("alignment_48", "alignment",
        "§3 alignment: \"power of two, 64 ≤ alignment ≤ 1048576\" (here 48; data_offset 144 and offsets are multiples of 48)",
        build(parts_of(alignment=48)))
    add("reserved_nonzero", "reserved",
        "§3 reserved (offset 104): \"MUST be 0\" (here 1)",
        build(parts_of(), header_edit=edit(reserved_104=1)))
    add("data_past_end", "section_bounds",
        "§3 \"For each section (offset, size), offset + size MUST NOT overflow and MUST be ≤ file_size\" "
        "(data is the last section and data_size is 64 too large)",
        build(parts_of(), order=("metadata", "directory", "data"), header_edit=edit(data_size=lambda v: v + 64)))
    add("overlapping_sections", "section_overlap",
        "§2 \"the three sections MUST lie inside the file after the header and MUST NOT overlap\" "
        "(data_size is one byte too large, so data overlaps metadata's first byte)",
        build(parts_of(), header_edit=edit(data_size=lambda v: v + 1)))
    add("tensor_count_too_large", "tensor_count",
        f"§3 tensor_count: \"MUST be ≤ directory_size / 52\" (directory_size {h0.directory_size}, tensor_count "
        f"{h0.directory_size // 52 + 1})",
        build(parts_of(), header_edit=edit(tensor_count=h0.directory_size // 52 + 1)))
    broken = bytearray(minimal)
    broken[h0.directory_offset + 4] = ord("x")  # the tensor's name "w" -> "x"; header_xxh3 not updated
    add("header_xxh3_mismatch", "header_xxh3",
        "§7 \"header_xxh3 protects the header and directory: a reader MUST verify it before interpreting the directory\" "
        "(the tensor's name was changed from \"w\" to \"x\" after the checksum was computed)",
        bytes(broken))

    # ---- directory rules (header_xxh3 valid) ----
    w = MINIMAL_TENSORS[0]
    add("duplicate_name", "names_unique",
        "§4 entry name: \"unique in the file\"; \"Rules a reader MUST check: names unique\" (two entries named \"w\")",
        build(parts_of([w, w])))

    p = parts_of()
    c = p.entries[0].components[0]
    c.size, c.xxh3 = 12, F.xxh3(p.data[:12])
    add("component_size_mismatch", "component_size",
        "§4 component size: \"MUST equal product(shape) × size(dtype)\" (F32 [2,2] needs 16; size says 12)",
        build(p))

    p = parts_of()
    c = p.entries[0].components[0]
    c.offset = 32
    p.data = bytes(32) + p.data
    add("misaligned_offset", "component_alignment",
        "§4 component offset: \"relative to data_offset; MUST be a multiple of alignment\" (offset 32, alignment 64)",
        build(p))

    p = parts_of()
    p.data = p.data[:8]
    add("component_past_data_size", "component_bounds",
        "§4 \"Rules a reader MUST check: … offset + size ≤ data_size\" (component [0, 16), data_size 8)",
        build(p))

    p = parts_of([w, dataclasses.replace(w, name="w2")])
    p.entries[1].components[0].offset = 0
    p.data = p.data[:16]
    add("overlapping_components", "component_overlap",
        "§4 \"Rules a reader MUST check: … no two non-empty components overlap\" (w and w2 both at [0, 16))",
        build(p))

    p = parts_of()
    p.entries[0].name = b"w\xff"
    add("invalid_utf8_name", "str_utf8",
        "§1 str: \"n bytes of UTF-8 … A reader MUST reject invalid UTF-8.\" (name is 77 FF)",
        build(p))

    p = parts_of()
    p.entries[0].dtype = p.entries[0].components[0].dtype = 15
    add("unknown_dtype", "dtype",
        "§4 dtype codes: codes 0–14 only; \"size MUST equal product(shape) × size(dtype)\" cannot hold for code 15 "
        "(entry and component dtype 15)",
        build(p))

    add("unknown_param_type", "param_type",
        "§4 param type: \"0 = i64, 1 = f64, 2 = str\"; \"Rules a reader MUST check: … param types known\" "
        "(nf4 param double_quant has type 3)",
        build(parts_of(nf4_small(dq_type=3))))

    add("part_past_shape0", "parts",
        "§4 part length: \"start + length ≤ shape[0]\"; \"Rules a reader MUST check: … parts within shape[0]\" "
        "(part rows [1, 3) of shape [2,2])",
        build(parts_of([dataclasses.replace(w, parts=[Part("w.a", 1, 2)])])))

    p = parts_of()
    add("directory_trailing_bytes", "directory_end",
        "§4 \"tensor_count entries, back to back; the directory MUST end exactly after the last one\" "
        "(one 0x00 byte after the only entry)",
        build(p, directory=p.directory() + b"\x00"))

    broken = bytearray(minimal)
    i = minimal.index(b"llama", h0.metadata_offset)
    broken[i:i + 5] = b"llamb"  # still valid JSON; metadata_xxh3 not updated
    add("metadata_xxh3_mismatch", "metadata_xxh3",
        "§5 \"A reader MUST verify metadata_xxh3 over the stored bytes\" (\"llama\" changed to \"llamb\" in the metadata)",
        bytes(broken))

    add("zstd_raw_size_mismatch", "metadata_zstd",
        "§5 \"A reader MUST … decompress into exactly metadata_raw_size bytes.\" "
        "(zstd metadata; metadata_raw_size is one more than the frame decompresses to)",
        build(parts_of(compress=True), header_edit=edit(metadata_raw_size=lambda v: v + 1)))

    # ---- more rules, beyond the list the vectors were first asked for ----
    add("raw_size_mismatch_uncompressed", "metadata_sizes",
        "§3 metadata_raw_size: \"equals metadata_size when bit 0 of flags is clear\" (flags 0, raw size = size + 1)",
        build(parts_of(), header_edit=edit(metadata_raw_size=lambda v: v + 1)))
    add("metadata_raw_size_too_large", "metadata_sizes",
        "§3 metadata_raw_size: \"≤ 2³⁰\" (zstd metadata, metadata_raw_size = 2³⁰ + 1)",
        build(parts_of(compress=True), header_edit=edit(metadata_raw_size=2**30 + 1)))
    add("section_overflow", "section_bounds",
        "§3 \"For each section (offset, size), offset + size MUST NOT overflow\" (directory_offset = 2⁶⁴ − 16)",
        build(parts_of(), header_edit=edit(directory_offset=2**64 - 16)))
    add("data_offset_unaligned", "data_offset",
        "§3 data_offset: \"multiple of alignment, ≥ 128\" (data_offset 136, alignment 64)",
        build(parts_of(), data_offset=136))
    p = parts_of()
    p.entries[0].name = "w" * 40  # a long name: the one-entry directory can then pass the /52 bound with tensor_count 2
    add("directory_short", "directory_end",
        "§4 \"tensor_count entries, back to back\" (tensor_count 2, within directory_size / 52, but the directory holds one entry)",
        build(p, header_edit=edit(tensor_count=2)))
    p = parts_of()
    p.entries[0].components = []
    p.entries[0].name = "w" * 16  # keeps the directory above the 52-byte-per-entry bound
    p.data = b""
    add("component_count_zero", "counts",
        "§4 component_count: \"1…16\"; \"Rules a reader MUST check: … counts within bounds\" (component_count 0)",
        build(p))
    p = parts_of()
    p.entries[0].shape = (1,) * 7 + (2, 2)
    add("rank_9", "rank",
        "§1 dims: \"a u8 rank r (r ≤ 8)\" (entry shape has rank 9)",
        build(p))
    p = parts_of()
    p.entries[0].shape = (F.MAX_DIM + 1,)
    add("dimension_too_large", "dimension",
        "§1 dims: \"Every dimension MUST be ≤ 137438953408\" (entry shape [137438953409])",
        build(p))
    p = parts_of()
    p.entries[0].components[0].shape = (F.MAX_DIM, F.MAX_DIM)
    add("component_size_overflow", "overflow",
        "§1 \"All arithmetic on sizes and offsets read from a file MUST be checked for overflow (in 64 bits); "
        "an overflow is a corrupt file\" (component shape [137438953408, 137438953408]: product(shape) overflows)",
        build(p))
    p = parts_of(compress=True)
    raw = F.metadata_json_bytes(MINIMAL_METADATA)
    cctx = zstandard.ZstdCompressor(level=19)
    p.stored = cctx.compress(raw[:40]) + cctx.compress(raw[40:])
    add("zstd_two_frames", "metadata_zstd",
        "§5 \"zstd-compressed (one frame, any level)\" (the metadata is two frames; together they decompress to "
        "exactly metadata_raw_size bytes of valid JSON)",
        build(p))
    return out


# --------------------------------------------------------------------------------------------
# README: minimal.i2q byte by byte
# --------------------------------------------------------------------------------------------

def hexdump(b: bytes) -> str:
    lines = []
    for off in range(0, len(b), 16):
        chunk = b[off:off + 16]
        hx = " ".join(f"{x:02x}" for x in chunk)
        hx = hx[:23] + " " + hx[23:] if len(chunk) > 8 else hx
        asc = "".join(chr(x) if 32 <= x < 127 else "." for x in chunk)
        lines.append(f"{off:08x}  {hx:<48}  |{asc}|")
    return "\n".join(lines)


def walk(buf: bytes, f: F.I2QFile) -> list[tuple[int, bytes, str]]:
    """(offset, bytes, meaning) for every field of the file, in file order."""
    rows: list[tuple[int, bytes, str]] = []
    h = f.header
    for name, off, code in F.HEADER_FIELDS:
        size = struct.calcsize("<" + code)
        v = getattr(h, name)
        if name == "magic":
            meaning = "magic `\\x89I2Q\\r\\n\\x1a\\n`"
        elif name in F.HEX_FIELDS:
            meaning = f"{name} = 0x{v:016x}"
        elif name == "flags":
            meaning = f"flags = {v} (metadata {'zstd' if v & 1 else 'not compressed'})"
        else:
            meaning = f"{name} = {v}"
        rows.append((off, buf[off:off + size], meaning))
    if h.data_offset > F.HEADER_SIZE:
        rows.append((F.HEADER_SIZE, buf[F.HEADER_SIZE:h.data_offset], "zero padding up to data_offset"))

    # data section
    pos = h.data_offset
    comps = sorted((c.offset, e, c) for e in f.entries for c in e.components)
    for off, e, c in comps:
        start = h.data_offset + off
        if start > pos:
            rows.append((pos, buf[pos:start], "zero padding between components"))
        name, esize = F.DTYPES[c.dtype]
        for k in range(0, c.size, esize):
            el = buf[start + k:start + k + esize]
            val = struct.unpack("<f", el)[0] if name == "F32" else el.hex()
            rows.append((start + k, el, f"{e.name}/{c.role} element {k // esize} = {val}"))
        pos = start + c.size

    # metadata section, 16 bytes a row
    m0 = h.metadata_offset
    for k in range(0, h.metadata_size, 16):
        chunk = buf[m0 + k:m0 + min(k + 16, h.metadata_size)]
        text = chunk.decode("utf-8", errors="replace").replace("\n", "\\n")
        rows.append((m0 + k, chunk, f"metadata `{text}`"))

    # directory, mirroring encode_entry
    pos = h.directory_offset

    def emit(n: int, meaning: str):
        nonlocal pos
        rows.append((pos, buf[pos:pos + n], meaning))
        pos += n

    def emit_str(s: str, what: str):
        b = s.encode("utf-8")
        emit(4, f"{what}: str length = {len(b)}")
        emit(len(b), f"{what} = \"{s}\"")

    def emit_dims(shape, what: str):
        emit(1, f"{what}: rank = {len(shape)}")
        for i, d in enumerate(shape):
            emit(8, f"{what}[{i}] = {d}")

    for e in f.entries:
        emit_str(e.name, "entry name")
        emit_str(e.scheme, "scheme")
        emit(1, f"dtype = {e.dtype} ({F.dtype_name(e.dtype)})")
        emit_dims(e.shape, "shape")
        emit(4, f"param_count = {len(e.params)}")
        for p in e.params:
            emit_str(p.key, "param key")
            emit(1, f"param type = {p.type} ({F.PARAM_TYPE_NAMES[p.type]})")
            if p.type == F.PARAM_STR:
                emit_str(p.value, "param value")
            else:
                emit(8, f"param value = {p.value}")
        emit(4, f"part_count = {len(e.parts)}")
        for p in e.parts:
            emit_str(p.name, "part name")
            emit(8, f"part start = {p.start}")
            emit(8, f"part length = {p.length}")
        emit(4, f"component_count = {len(e.components)}")
        for c in e.components:
            emit_str(c.role, "component role")
            emit(1, f"component dtype = {c.dtype} ({F.dtype_name(c.dtype)})")
            emit_dims(c.shape, "component shape")
            emit(8, f"component offset = {c.offset} (from data_offset)")
            emit(8, f"component size = {c.size}")
            emit(8, f"component xxh3 = 0x{c.xxh3:016x}")
    rows.sort(key=lambda r: r[0])
    # the walk must cover the file exactly once
    cover = b"".join(r[1] for r in rows)
    assert cover == buf, "README walk does not cover the file"
    return rows


def readme(good: dict[str, bytes], bad: list[tuple[str, str, str, bytes]]) -> str:
    mb = good["minimal"]
    mf = F.I2QFile(mb)
    h = mf.header
    rows = walk(mb, mf)
    table = []
    for off, b, meaning in rows:
        hx = b.hex(" ")
        # long byte runs wrap at 16 bytes
        first, rest = hx[:47], hx[48:]
        table.append(f"{off:5d} {off:04x}  {first:<47}  {meaning}")
        while rest:
            table.append(f"{'':10}  {rest[:47]:<47}")
            rest = rest[48:]
    sizes = "\n".join(f"| `{n}.i2q` | {len(b)} |" for n, b in good.items())
    badrows = "\n".join(f"| `bad/{n}.i2q` | {len(b)} | `{rule}` | " + why.replace("|", "\\|") + " |"
                        for n, rule, why, b in bad)
    directory = mb[h.directory_offset:h.directory_offset + h.directory_size]
    return f"""# i2q format test vectors

Generated by `scripts/make_format_vectors.py` (do not edit by hand; rerun it — the output is
deterministic) and checked by the independent Python reader `scripts/i2q_format.py`, which was
written from `Formats/i2q-format.md` alone:

    /work/venv/bin/python scripts/make_format_vectors.py
    /work/venv/bin/python scripts/i2q_format.py dump Formats/vectors/full.i2q --hex

## Good vectors

Every reader MUST accept these and decode them to exactly `NAME.expected.json`.

| file | bytes |
|------|------:|
{sizes}

- `minimal.i2q`: alignment 64, uncompressed metadata, one plain F32 [2,2] tensor `w`.
- `full.i2q`: alignment 64, zstd metadata; plain F16, BF16, I64, BOOL, F64 tensors, a rank-0 F32
  scalar, an empty F32 [0,3] tensor, an `nf4` tensor with double quantization (i64, f64 and str
  params; components `packed`, `absmax`, `nested_absmax`, `nested_code`), a fused `qkv_proj` with
  three parts, a non-ASCII tensor name, and a base64 (non-UTF-8) `tokenizer.model` file.
- `reordered.i2q`: minimal's content with the sections in another order (header, metadata,
  directory, padding, data). §2: "A reader MUST NOT rely on this order beyond what §3 requires".

`NAME.expected.json` holds:

- `header`: every field of the fixed header as a JSON integer, except `magic` (hex string) and
  `metadata_xxh3` / `header_xxh3` (16 lowercase hex digits). The two reserved u64 fields are
  named `reserved_104` and `reserved_112` after their offsets.
- `entries`, in directory order: `name`, `scheme`, `dtype` (the name from the spec's table),
  `shape`, `params` as `[key, type, value]` (`type` is `"i64"`, `"f64"` or `"str"`; an f64 param
  has a fourth item, its bit pattern as 16 hex digits), `parts` (`name`, `start`, `length`) and
  `components` (`role`, `dtype`, `shape`, `offset` from `data_offset`, `size`, `xxh3` as 16 hex
  digits, `hex`: the component's bytes).
- `metadata`: the metadata section, decompressed and parsed as JSON.

## Bad vectors

Every reader MUST reject these. Each is `minimal.i2q` (or a close variant) with one rule broken;
the header checksum is recomputed unless it is the broken rule, so a reader that checks in §3's
order fails on the intended rule. `bad/NAME.why` quotes the rule; the "reader rule" column is the
identifier `scripts/i2q_format.py` reports (`FormatError.rule`).

| file | bytes | reader rule | why |
|------|------:|-------------|-----|
{badrows}

## `minimal.i2q` byte by byte

{len(mb)} bytes: the 128-byte header; the data section at {h.data_offset} ({h.data_size} bytes); the metadata
at {h.metadata_offset} ({h.metadata_size} bytes of JSON, not compressed); the directory at {h.directory_offset}
({h.directory_size} bytes, one entry). All integers are little-endian.

```
{hexdump(mb)}
```

Field by field (offset in decimal and hex, bytes, meaning):

```
{chr(10).join(table)}
```

Checksums:

- `metadata_xxh3` = XXH3-64(bytes [{h.metadata_offset}, {h.metadata_offset + h.metadata_size})) = `{h.metadata_xxh3:016x}`.
- `header_xxh3` = XXH3-64(bytes [0, 120) followed by the directory, bytes [{h.directory_offset}, {h.directory_offset + h.directory_size})),
  i.e. XXH3-64 of {120 + len(directory)} bytes = `{h.header_xxh3:016x}`.
- the component `w/data` xxh3 = XXH3-64(bytes [{h.data_offset}, {h.data_offset + 16})) = `{mf.entries[0].components[0].xxh3:016x}`.
- For reference, XXH3-64 of no bytes (an empty component) is `{F.xxh3(b''):016x}`.
"""


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def generate() -> tuple[dict[str, bytes], list[tuple[str, str, str, bytes]]]:
    return good_vectors(), bad_vectors()


def expected_json(b: bytes) -> str:
    f = F.I2QFile(b)
    f.verify_all()
    for name in f.metadata["files"]:
        f.file_bytes(name)
    return json.dumps(F.to_json(f, with_hex=True), ensure_ascii=False, indent=2) + "\n"


def check(good: dict[str, bytes], bad: list[tuple[str, str, str, bytes]]) -> None:
    for name, b in good.items():
        f = F.I2QFile(b)
        f.verify_all()
        for e in f.entries:
            F.check_scheme(e)
    full = F.I2QFile(good["full"])
    assert full.file_bytes("tokenizer.model") == b"\x0a\x0b\x0a\x05<unk>\x15\x00\x00\x00\x00\x18\x02\xff\xfe\x80\xc0\xc1\xf5\x00"
    assert full.metadata["files"]["tokenizer.model"]["encoding"] == "base64"
    # reordered holds minimal's content: same entries (offsets are relative to data_offset) and metadata
    mj, rj = F.to_json(F.I2QFile(good["minimal"])), F.to_json(F.I2QFile(good["reordered"]))
    assert mj["entries"] == rj["entries"] and mj["metadata"] == rj["metadata"]
    assert F.I2QFile(good["minimal"]).plain_bytes("w") == struct.pack("<4f", 1.0, -2.0, 0.5, 3.0)
    names = set()
    for name, rule, why, b in bad:
        assert name not in names, name
        names.add(name)
        try:
            f = F.I2QFile(b)
            f.verify_all()
        except F.FormatError as e:
            if e.rule != rule:
                raise AssertionError(f"bad/{name}: rejected for {e.rule!r} ({e}), expected {rule!r}")
        else:
            raise AssertionError(f"bad/{name}: accepted")
        assert "\n" not in why


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "Formats" / "vectors"))
    args = ap.parse_args()
    out = Path(args.out)

    good, bad = generate()
    good2, bad2 = generate()
    assert good == good2 and bad == bad2, "vector generation is not deterministic"
    check(good, bad)
    text = readme(good, bad)

    (out / "bad").mkdir(parents=True, exist_ok=True)
    for d, pats in ((out, ("*.i2q", "*.expected.json")), (out / "bad", ("*.i2q", "*.why"))):
        for pat in pats:
            for stale in d.glob(pat):
                stale.unlink()
    for name, b in good.items():
        (out / f"{name}.i2q").write_bytes(b)
        (out / f"{name}.expected.json").write_text(expected_json(b), encoding="utf-8")
    for name, rule, why, b in bad:
        (out / "bad" / f"{name}.i2q").write_bytes(b)
        (out / "bad" / f"{name}.why").write_text(why + "\n", encoding="utf-8")
    (out / "README.md").write_text(text, encoding="utf-8")

    # re-read what was written, from disk
    for name in good:
        b = (out / f"{name}.i2q").read_bytes()
        assert json.loads((out / f"{name}.expected.json").read_text(encoding="utf-8")) == json.loads(expected_json(b))
    for name, rule, why, _ in bad:
        try:
            F.I2QFile.open(str(out / "bad" / f"{name}.i2q")).verify_all()
            raise AssertionError(f"{name} accepted")
        except F.FormatError as e:
            assert e.rule == rule, (name, e.rule, rule)
    print(f"wrote {len(good)} good and {len(bad)} bad vectors to {out}")
    for name, b in good.items():
        print(f"  {name}.i2q  {len(b)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
