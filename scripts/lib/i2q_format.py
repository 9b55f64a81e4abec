#!/usr/bin/env python3
"""Reference reader and writer for the i2q file format, version 1.0.

Written from Formats/i2q-format.md alone, as an independent second implementation of the
format (it shares no code with the Swift one). Needs the standard library plus the PyPI
packages `xxhash` (XXH3-64) and `zstandard`.

    python scripts/lib/i2q_format.py dump FILE [--hex]

reads FILE, checks every MUST of the spec, verifies every checksum (header, metadata and each
component) and prints the header, directory and metadata as JSON.

Reader:  I2QFile(bytes) parses and validates; a broken rule raises FormatError, whose `.rule`
         is a short identifier (see RULES) and whose message quotes the spec's rule.
Writer:  write_file(tensors, metadata, ...) lays tensors out and returns the file's bytes; the
         lower-level helpers (layout, encode_directory, encode_metadata, assemble) let the
         test-vector script build deliberately broken files.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import struct
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import xxhash
import zstandard

# --------------------------------------------------------------------------------------------
# Constants (§1, §3, §4)
# --------------------------------------------------------------------------------------------

MAGIC = b"\x89I2Q\r\n\x1a\n"
HEADER_SIZE = 128
VERSION_MAJOR = 1
VERSION_MINOR = 0
FLAG_ZSTD = 1 << 0
KNOWN_FLAGS = FLAG_ZSTD
MIN_ALIGNMENT = 64
MAX_ALIGNMENT = 1 << 20
MAX_METADATA_RAW = 1 << 30
MIN_ENTRY_SIZE = 52  # §3: "52 bytes is the size of the smallest possible directory entry"
MAX_STR = 65535
MAX_RANK = 8
MAX_DIM = 64 * (2**31 - 1)  # 137438953408
MAX_PARAMS = 256
MAX_PARTS = 65535
MIN_COMPONENTS, MAX_COMPONENTS = 1, 16
U64_MAX = 2**64 - 1

# code -> (name, bytes per element)
DTYPES: dict[int, tuple[str, int]] = {
    0: ("BOOL", 1), 1: ("U8", 1), 2: ("I8", 1), 3: ("I16", 2), 4: ("U16", 2),
    5: ("F16", 2), 6: ("BF16", 2), 7: ("I32", 4), 8: ("U32", 4), 9: ("F32", 4),
    10: ("F64", 8), 11: ("I64", 8), 12: ("U64", 8), 13: ("F8_E4M3", 1), 14: ("F8_E5M2", 1),
}
DTYPE_CODES: dict[str, int] = {name: code for code, (name, _) in DTYPES.items()}

PARAM_I64, PARAM_F64, PARAM_STR = 0, 1, 2
PARAM_TYPE_NAMES = {PARAM_I64: "i64", PARAM_F64: "f64", PARAM_STR: "str"}
PARAM_TYPE_CODES = {v: k for k, v in PARAM_TYPE_NAMES.items()}

KNOWN_SCHEMES = ("plain", "nf4", "fp4", "affine_int4")

# Header layout: (name, offset, struct code). 8+2+2+4 + 14*8 = 128 bytes.
HEADER_FIELDS: list[tuple[str, int, str]] = [
    ("magic", 0, "8s"),
    ("version_major", 8, "H"),
    ("version_minor", 10, "H"),
    ("flags", 12, "I"),
    ("file_size", 16, "Q"),
    ("alignment", 24, "Q"),
    ("data_offset", 32, "Q"),
    ("data_size", 40, "Q"),
    ("metadata_offset", 48, "Q"),
    ("metadata_size", 56, "Q"),
    ("metadata_raw_size", 64, "Q"),
    ("directory_offset", 72, "Q"),
    ("directory_size", 80, "Q"),
    ("tensor_count", 88, "Q"),
    ("metadata_xxh3", 96, "Q"),
    ("reserved_104", 104, "Q"),
    ("reserved_112", 112, "Q"),
    ("header_xxh3", 120, "Q"),
]
HEADER_STRUCT = struct.Struct("<" + "".join(code for _, _, code in HEADER_FIELDS))
assert HEADER_STRUCT.size == HEADER_SIZE

# Rule identifiers a FormatError can carry, with the spec's words.
RULES: dict[str, str] = {
    "magic": "§3 magic: `89 49 32 51 0D 0A 1A 0A`",
    "version": "§3 version_major: A reader MUST reject another major version",
    "flags": "§3 flags: Other bits MUST be 0",
    "file_size": "§3 file_size: MUST equal the file's length (shorter = truncated, longer = trailing data)",
    "alignment": "§3 alignment: power of two, 64 ≤ alignment ≤ 1048576",
    "reserved": "§3 reserved: MUST be 0",
    "data_offset": "§3 data_offset: multiple of alignment, ≥ 128",
    "section_start": "§3 metadata_offset / directory_offset: ≥ 128 (§2: sections MUST lie inside the file after the header)",
    "section_bounds": "§3 For each section (offset, size), offset + size MUST NOT overflow and MUST be ≤ file_size",
    "section_overlap": "§2 the three sections MUST lie inside the file after the header and MUST NOT overlap",
    "metadata_sizes": "§3 metadata_raw_size: ≤ 2³⁰; equals metadata_size when bit 0 of flags is clear",
    "tensor_count": "§3 tensor_count: MUST be ≤ directory_size / 52",
    "header_xxh3": "§7 header_xxh3: a reader MUST verify it before interpreting the directory",
    "overflow": "§1 All arithmetic on sizes and offsets read from a file MUST be checked for overflow (in 64 bits); an overflow is a corrupt file",
    "str_length": "§1 str: n ≤ 65535",
    "str_utf8": "§1 str: A reader MUST reject invalid UTF-8",
    "rank": "§1 dims: r ≤ 8",
    "dimension": "§1 dims: Every dimension MUST be ≤ 137438953408",
    "dtype": "§4 dtype codes: the dtype table (a component's size(dtype) is undefined otherwise)",
    "counts": "§4 counts within bounds (param_count ≤ 256, part_count ≤ 65535, component_count 1…16)",
    "param_type": "§4 param types known (0 = i64, 1 = f64, 2 = str)",
    "parts": "§4 parts within shape[0] (start + length ≤ shape[0])",
    "component_size": "§4 component size: MUST equal product(shape) × size(dtype)",
    "component_alignment": "§4 component offset: MUST be a multiple of alignment",
    "component_bounds": "§4 offset + size ≤ data_size",
    "component_overlap": "§4 no two non-empty components overlap",
    "names_unique": "§4 names unique",
    "directory_end": "§4 the directory MUST end exactly after the last one",
    "metadata_xxh3": "§5 A reader MUST verify metadata_xxh3 over the stored bytes",
    "metadata_zstd": "§5 zstd-compressed (one frame) … decompress into exactly metadata_raw_size bytes",
    "metadata_json": "§5 UTF-8 JSON",
    "metadata_files": "§5 files: {\"encoding\": \"utf8\" | \"base64\", \"data\": …}",
    "component_xxh3": "§4/§7 component xxh3: XXH3-64 of the component's size bytes",
    "scheme": "§4 Schemes (checked only when a tensor's values are asked for)",
}


class FormatError(ValueError):
    """A file breaks a rule of the i2q format. `rule` is a key of RULES."""

    def __init__(self, rule: str, detail: str):
        assert rule in RULES, rule
        self.rule = rule
        self.detail = detail
        super().__init__(f"[{rule}] {detail} — {RULES[rule]}")


def xxh3(data: bytes) -> int:
    """XXH3-64, seed 0 (§1)."""
    return xxhash.xxh3_64_intdigest(data)


def hex64(value: int) -> str:
    return f"{value:016x}"


def dtype_name(code: int) -> str:
    return DTYPES[code][0] if code in DTYPES else f"<unknown {code}>"


# Overflow-checked 64-bit arithmetic (§1). Python integers never overflow, so check explicitly.
def add64(a: int, b: int, what: str) -> int:
    r = a + b
    if r > U64_MAX:
        raise FormatError("overflow", f"{what}: {a} + {b} overflows 64 bits")
    return r


def mul64(a: int, b: int, what: str) -> int:
    r = a * b
    if r > U64_MAX:
        raise FormatError("overflow", f"{what}: {a} × {b} overflows 64 bits")
    return r


def product64(dims: Iterable[int], what: str) -> int:
    n = 1
    for d in dims:
        n = mul64(n, d, what)
    return n


def f64_bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def bits_f64(b: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", b))[0]


# --------------------------------------------------------------------------------------------
# Data model (shared by reader and writer)
# --------------------------------------------------------------------------------------------


@dataclass
class Param:
    key: str | bytes
    type: int                    # 0 i64, 1 f64, 2 str (the writer may put anything here)
    value: int | float | str | bytes

    def value_u64(self) -> int:
        """The stored u64 for i64/f64 params."""
        if self.type == PARAM_F64:
            return f64_bits(self.value) if isinstance(self.value, float) else int(self.value)
        return int(self.value) & U64_MAX


@dataclass
class Part:
    name: str | bytes
    start: int
    length: int


@dataclass
class Component:
    role: str | bytes
    dtype: int
    shape: tuple[int, ...]
    offset: int = 0
    size: int = 0
    xxh3: int = 0


@dataclass
class Entry:
    name: str | bytes
    scheme: str | bytes
    dtype: int
    shape: tuple[int, ...]
    params: list[Param] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)
    components: list[Component] = field(default_factory=list)


@dataclass
class Header:
    magic: bytes
    version_major: int
    version_minor: int
    flags: int
    file_size: int
    alignment: int
    data_offset: int
    data_size: int
    metadata_offset: int
    metadata_size: int
    metadata_raw_size: int
    directory_offset: int
    directory_size: int
    tensor_count: int
    metadata_xxh3: int
    reserved_104: int
    reserved_112: int
    header_xxh3: int

    @classmethod
    def unpack(cls, raw: bytes) -> "Header":
        return cls(*HEADER_STRUCT.unpack(raw[:HEADER_SIZE]))

    def pack(self) -> bytes:
        return HEADER_STRUCT.pack(*dataclasses.astuple(self))

    def with_checksum(self, directory: bytes) -> "Header":
        """Recomputes header_xxh3 = XXH3-64(header[0:120] ‖ directory)."""
        h = dataclasses.replace(self)
        h.header_xxh3 = xxh3(h.pack()[:120] + directory)
        return h


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------


class _Cursor:
    """Reads the directory; running past its end breaks "the directory MUST end exactly after
    the last one" (an entry is cut short)."""

    def __init__(self, buf: bytes):
        self.buf = buf
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise FormatError("directory_end",
                              f"{what} at directory byte {self.pos} runs past the directory's end ({len(self.buf)} bytes)")
        b = self.buf[self.pos:end]
        self.pos = end
        return b

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.take(4, what))[0]

    def u64(self, what: str) -> int:
        return struct.unpack("<Q", self.take(8, what))[0]

    def str(self, what: str) -> str:
        n = self.u32(what + " length")
        if n > MAX_STR:
            raise FormatError("str_length", f"{what}: length {n} > 65535")
        raw = self.take(n, what)
        try:
            return raw.decode("utf-8", errors="strict")
        except UnicodeDecodeError as e:
            raise FormatError("str_utf8", f"{what}: invalid UTF-8 {raw!r} ({e.reason})") from None

    def dims(self, what: str) -> tuple[int, ...]:
        r = self.u8(what + " rank")
        if r > MAX_RANK:
            raise FormatError("rank", f"{what}: rank {r} > 8")
        dims = tuple(self.u64(f"{what}[{i}]") for i in range(r))
        for i, d in enumerate(dims):
            if d > MAX_DIM:
                raise FormatError("dimension", f"{what}[{i}] = {d} > 137438953408")
        return dims


class I2QFile:
    """A parsed, validated i2q file. Construction runs every check of §3–§5 in the order §3
    gives; component checksums are verified lazily (verify_component / verify_all)."""

    def __init__(self, buf: bytes):
        self.buf = bytes(buf)
        self.header = self._check_header()
        self.entries = self._check_directory()
        self.metadata_raw = self._check_metadata()
        self.metadata = self._decode_metadata()
        self._by_name = {e.name: e for e in self.entries}

    @classmethod
    def open(cls, path: str) -> "I2QFile":
        with open(path, "rb") as f:
            return cls(f.read())

    # ---- §3 ---------------------------------------------------------------------------
    def _check_header(self) -> Header:
        buf = self.buf
        if buf[:8] != MAGIC:
            raise FormatError("magic", f"first bytes are {buf[:8].hex(' ')}")
        if len(buf) < HEADER_SIZE:
            raise FormatError("file_size", f"file is {len(buf)} bytes, shorter than the 128-byte header")
        h = Header.unpack(buf)
        if h.version_major != VERSION_MAJOR:
            raise FormatError("version", f"version_major is {h.version_major}")
        if h.flags & ~KNOWN_FLAGS:
            raise FormatError("flags", f"flags = {h.flags:#x} has unknown bits {h.flags & ~KNOWN_FLAGS:#x}")
        if h.file_size != len(buf):
            kind = "truncated" if len(buf) < h.file_size else "trailing data"
            raise FormatError("file_size", f"file_size = {h.file_size} but the file is {len(buf)} bytes ({kind})")
        a = h.alignment
        if not (MIN_ALIGNMENT <= a <= MAX_ALIGNMENT and a & (a - 1) == 0):
            raise FormatError("alignment", f"alignment = {a}")
        if h.reserved_104 != 0 or h.reserved_112 != 0:
            raise FormatError("reserved", f"reserved = {h.reserved_104:#x}, {h.reserved_112:#x}")
        # sections
        if h.data_offset < HEADER_SIZE or h.data_offset % a != 0:
            raise FormatError("data_offset", f"data_offset = {h.data_offset}, alignment = {a}")
        sections = [("data", h.data_offset, h.data_size),
                    ("metadata", h.metadata_offset, h.metadata_size),
                    ("directory", h.directory_offset, h.directory_size)]
        for name, off, size in sections:
            if off < HEADER_SIZE:
                raise FormatError("section_start", f"{name}_offset = {off} < 128")
        for name, off, size in sections:
            if off + size > U64_MAX:
                raise FormatError("section_bounds", f"{name}: {off} + {size} overflows 64 bits")
            if off + size > h.file_size:
                raise FormatError("section_bounds", f"{name} section [{off}, {off + size}) ends past file_size {h.file_size}")
        # Empty sections occupy no bytes and so overlap nothing (an assumption; see the report).
        nonempty = sorted((off, off + size, name) for name, off, size in sections if size > 0)
        for (s0, e0, n0), (s1, e1, n1) in zip(nonempty, nonempty[1:]):
            if s1 < e0:
                raise FormatError("section_overlap", f"{n0} [{s0}, {e0}) overlaps {n1} [{s1}, {e1})")
        # metadata sizes
        if h.metadata_raw_size > MAX_METADATA_RAW:
            raise FormatError("metadata_sizes", f"metadata_raw_size = {h.metadata_raw_size} > 2^30")
        if not h.flags & FLAG_ZSTD and h.metadata_raw_size != h.metadata_size:
            raise FormatError("metadata_sizes",
                              f"uncompressed metadata but metadata_raw_size {h.metadata_raw_size} != metadata_size {h.metadata_size}")
        # tensor_count
        if h.tensor_count > h.directory_size // MIN_ENTRY_SIZE:
            raise FormatError("tensor_count", f"tensor_count = {h.tensor_count} > directory_size {h.directory_size} / 52")
        # header_xxh3, before the directory is interpreted
        directory = buf[h.directory_offset:h.directory_offset + h.directory_size]
        want = xxh3(buf[:120] + directory)
        if want != h.header_xxh3:
            raise FormatError("header_xxh3", f"stored {hex64(h.header_xxh3)}, computed {hex64(want)}")
        return h

    # ---- §4 ---------------------------------------------------------------------------
    def _check_directory(self) -> list[Entry]:
        h = self.header
        cur = _Cursor(self.buf[h.directory_offset:h.directory_offset + h.directory_size])
        entries: list[Entry] = []
        seen: set[str] = set()
        for i in range(h.tensor_count):
            e = self._read_entry(cur, i)
            if e.name in seen:
                raise FormatError("names_unique", f"entry {i}: name {e.name!r} appears twice")
            seen.add(e.name)
            entries.append(e)
        if cur.pos != len(cur.buf):
            raise FormatError("directory_end",
                              f"{len(cur.buf) - cur.pos} bytes follow the last of the {h.tensor_count} entries")
        # no two non-empty components overlap (data-section offsets are half-open ranges)
        spans = sorted((c.offset, c.offset + c.size, f"{e.name}/{c.role}")
                       for e in entries for c in e.components if c.size > 0)
        for (s0, e0, n0), (s1, e1, n1) in zip(spans, spans[1:]):
            if s1 < e0:
                raise FormatError("component_overlap", f"{n0} [{s0}, {e0}) overlaps {n1} [{s1}, {e1})")
        return entries

    def _read_entry(self, cur: _Cursor, i: int) -> Entry:
        h = self.header
        where = f"entry {i}"
        name = cur.str(f"{where} name")
        where = f"entry {i} ({name!r})"
        scheme = cur.str(f"{where} scheme")
        dtype = cur.u8(f"{where} dtype")
        if dtype not in DTYPES:
            raise FormatError("dtype", f"{where}: unknown dtype code {dtype}")
        shape = cur.dims(f"{where} shape")
        product64(shape, f"{where} element count")

        param_count = cur.u32(f"{where} param_count")
        if param_count > MAX_PARAMS:
            raise FormatError("counts", f"{where}: param_count {param_count} > 256")
        params = []
        for j in range(param_count):
            key = cur.str(f"{where} param {j} key")
            ptype = cur.u8(f"{where} param {key!r} type")
            if ptype == PARAM_I64:
                u = cur.u64(f"{where} param {key!r} value")
                params.append(Param(key, ptype, u - (1 << 64) if u >> 63 else u))
            elif ptype == PARAM_F64:
                u = cur.u64(f"{where} param {key!r} value")
                params.append(Param(key, ptype, bits_f64(u)))
            elif ptype == PARAM_STR:
                params.append(Param(key, ptype, cur.str(f"{where} param {key!r} value")))
            else:
                raise FormatError("param_type", f"{where}: param {key!r} has type {ptype}")

        part_count = cur.u32(f"{where} part_count")
        if part_count > MAX_PARTS:
            raise FormatError("counts", f"{where}: part_count {part_count} > 65535")
        parts = []
        for j in range(part_count):
            pname = cur.str(f"{where} part {j} name")
            start = cur.u64(f"{where} part {pname!r} start")
            length = cur.u64(f"{where} part {pname!r} length")
            if not shape:
                raise FormatError("parts", f"{where}: part {pname!r} of a rank-0 tensor (no shape[0])")
            end = add64(start, length, f"{where} part {pname!r} start + length")
            if end > shape[0]:
                raise FormatError("parts", f"{where}: part {pname!r} rows [{start}, {end}) past shape[0] = {shape[0]}")
            parts.append(Part(pname, start, length))

        component_count = cur.u32(f"{where} component_count")
        if not MIN_COMPONENTS <= component_count <= MAX_COMPONENTS:
            raise FormatError("counts", f"{where}: component_count {component_count} not in 1…16")
        components = []
        for j in range(component_count):
            role = cur.str(f"{where} component {j} role")
            cw = f"{where} component {role!r}"
            cdtype = cur.u8(f"{cw} dtype")
            if cdtype not in DTYPES:
                raise FormatError("dtype", f"{cw}: unknown dtype code {cdtype}")
            cshape = cur.dims(f"{cw} shape")
            offset = cur.u64(f"{cw} offset")
            size = cur.u64(f"{cw} size")
            checksum = cur.u64(f"{cw} xxh3")
            want = mul64(product64(cshape, f"{cw} element count"), DTYPES[cdtype][1], f"{cw} byte size")
            if size != want:
                raise FormatError("component_size",
                                  f"{cw}: size {size} != product({list(cshape)}) × {DTYPES[cdtype][1]} = {want}")
            if offset % h.alignment != 0:
                raise FormatError("component_alignment", f"{cw}: offset {offset} not a multiple of {h.alignment}")
            end = add64(offset, size, f"{cw} offset + size")
            if end > h.data_size:
                raise FormatError("component_bounds", f"{cw}: [{offset}, {end}) past data_size {h.data_size}")
            components.append(Component(role, cdtype, cshape, offset, size, checksum))
        return Entry(name, scheme, dtype, shape, params, parts, components)

    # ---- §5 ---------------------------------------------------------------------------
    def _check_metadata(self) -> bytes:
        h = self.header
        stored = self.buf[h.metadata_offset:h.metadata_offset + h.metadata_size]
        got = xxh3(stored)
        if got != h.metadata_xxh3:
            raise FormatError("metadata_xxh3", f"stored {hex64(h.metadata_xxh3)}, computed {hex64(got)}")
        if not h.flags & FLAG_ZSTD:
            return stored
        # One zstd frame, decompressing to exactly metadata_raw_size bytes. Feed the input in
        # chunks so that a frame claiming more output is stopped early.
        d = zstandard.ZstdDecompressor().decompressobj()
        out = bytearray()
        fed = 0
        try:
            while fed < len(stored) and not d.eof:
                chunk = stored[fed:fed + (1 << 16)]
                fed += len(chunk)
                out += d.decompress(chunk)
                if len(out) > h.metadata_raw_size:
                    raise FormatError("metadata_zstd", f"metadata decompresses to more than metadata_raw_size = {h.metadata_raw_size}")
        except zstandard.ZstdError as e:
            raise FormatError("metadata_zstd", f"zstd error: {e}") from None
        if not d.eof:
            raise FormatError("metadata_zstd", "metadata ends inside a zstd frame")
        leftover = len(d.unused_data) + (len(stored) - fed)
        if leftover:
            raise FormatError("metadata_zstd", f"{leftover} bytes follow the zstd frame (one frame only)")
        if len(out) != h.metadata_raw_size:
            raise FormatError("metadata_zstd", f"metadata decompresses to {len(out)} bytes, metadata_raw_size = {h.metadata_raw_size}")
        return bytes(out)

    def _decode_metadata(self) -> Any:
        try:
            text = self.metadata_raw.decode("utf-8", errors="strict")
            meta = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatError("metadata_json", str(e)) from None
        if not isinstance(meta, dict):
            raise FormatError("metadata_json", "metadata is not a JSON object")
        files = meta.get("files", {})
        if not isinstance(files, dict):
            raise FormatError("metadata_files", "\"files\" is not an object")
        for fname, f in files.items():
            if not (isinstance(f, dict) and f.get("encoding") in ("utf8", "base64") and isinstance(f.get("data"), str)):
                raise FormatError("metadata_files", f"files[{fname!r}] is not {{encoding: utf8|base64, data: str}}")
        return meta

    def file_bytes(self, name: str) -> bytes:
        """A small file from metadata.files, decoded."""
        f = self.metadata["files"][name]
        if f["encoding"] == "utf8":
            return f["data"].encode("utf-8")
        try:
            return base64.b64decode(f["data"], validate=True)
        except ValueError as e:
            raise FormatError("metadata_files", f"files[{name!r}]: bad base64: {e}") from None

    # ---- components (§4, §7) --------------------------------------------------------------
    def entry(self, name: str) -> Entry:
        return self._by_name[name]

    def component_bytes(self, c: Component) -> bytes:
        start = self.header.data_offset + c.offset
        return self.buf[start:start + c.size]

    def verify_component(self, e: Entry, c: Component) -> None:
        got = xxh3(self.component_bytes(c))
        if got != c.xxh3:
            raise FormatError("component_xxh3",
                              f"tensor {e.name!r} component {c.role!r}: stored {hex64(c.xxh3)}, computed {hex64(got)}")

    def verify_all(self) -> None:
        for e in self.entries:
            for c in e.components:
                self.verify_component(e, c)

    # ---- values (scheme rules apply only here, §4) ---------------------------------------
    def check_scheme(self, e: Entry) -> None:
        check_scheme(e)

    def plain_bytes(self, name: str) -> bytes:
        """The verified bytes of a plain tensor (row-major, little-endian)."""
        e = self.entry(name)
        check_scheme(e)
        if e.scheme != "plain":
            raise FormatError("scheme", f"{name!r} is {e.scheme!r}, not plain")
        self.verify_component(e, e.components[0])
        return self.component_bytes(e.components[0])


def check_scheme(e: Entry) -> None:
    """The per-scheme rules of §4 ("Schemes"), which a reader applies only when it is asked for
    a tensor's values."""
    roles = {c.role: c for c in e.components}
    params = {p.key: p for p in e.params}

    def fail(msg: str) -> None:
        raise FormatError("scheme", f"{e.name!r} ({e.scheme}): {msg}")

    if e.scheme == "plain":
        if len(e.components) != 1 or e.components[0].role != "data":
            fail("plain needs exactly one component, role data")
        c = e.components[0]
        if c.dtype != e.dtype or c.shape != e.shape:
            fail("plain component's dtype and shape must equal the entry's")
        if e.params:
            fail("plain has no params")
    elif e.scheme in ("nf4", "fp4"):
        n = product64(e.shape, "element count")

        def i64(key: str, default: int | None = None) -> int:
            p = params.get(key)
            if p is None:
                if default is None:
                    fail(f"missing param {key}")
                return default
            if p.type != PARAM_I64:
                fail(f"param {key} must be i64")
            return p.value

        blocksize = i64("blocksize", 64)
        dq = i64("double_quant", 0)
        if blocksize <= 0 or dq not in (0, 1):
            fail("blocksize must be > 0 and double_quant 0/1")
        nblocks = -(-n // blocksize)
        want = {"packed": (DTYPE_CODES["U8"], ((n + 1) // 2,)),
                "absmax": (DTYPE_CODES["U8"] if dq else DTYPE_CODES["F32"], (nblocks,))}
        if dq:
            nested = i64("nested_blocksize", 256)
            if nested <= 0:
                fail("nested_blocksize must be > 0")
            if "nested_offset" not in params or params["nested_offset"].type != PARAM_F64:
                fail("double quantization needs an f64 nested_offset")
            want["nested_absmax"] = (DTYPE_CODES["F32"], (-(-nblocks // nested),))
            want["nested_code"] = (DTYPE_CODES["F32"], (256,))
        if set(roles) != set(want):
            fail(f"components {sorted(roles)} != {sorted(want)}")
        for role, (dt, shape) in want.items():
            c = roles[role]
            if c.dtype != dt or c.shape != shape:
                fail(f"component {role} is {dtype_name(c.dtype)}{list(c.shape)}, expected {dtype_name(dt)}{list(shape)}")
    elif e.scheme == "affine_int4":
        for key, t in (("group_size", PARAM_I64), ("pack_order", PARAM_STR), ("zero_point", PARAM_I64)):
            if key not in params or params[key].type != t:
                fail(f"needs {PARAM_TYPE_NAMES[t]} param {key}")
        need = {"qweight", "scales"} | ({"zeros"} if params["zero_point"].value else set())
        if not need <= set(roles):
            fail(f"components {sorted(roles)} lack {sorted(need - set(roles))}")
    else:
        fail("unknown scheme")


# --------------------------------------------------------------------------------------------
# JSON view (used by `dump` and by the test vectors' *.expected.json)
# --------------------------------------------------------------------------------------------

HEX_FIELDS = ("metadata_xxh3", "header_xxh3")


def header_json(h: Header) -> dict:
    out: dict[str, Any] = {}
    for name, _, _ in HEADER_FIELDS:
        v = getattr(h, name)
        if name == "magic":
            out[name] = v.hex()
        elif name in HEX_FIELDS:
            out[name] = hex64(v)
        else:
            out[name] = v
    return out


def param_json(p: Param) -> list:
    t = PARAM_TYPE_NAMES[p.type]
    if p.type == PARAM_F64:
        return [p.key, t, p.value, hex64(f64_bits(p.value))]
    return [p.key, t, p.value]


def entry_json(f: I2QFile, e: Entry, with_hex: bool) -> dict:
    comps = []
    for c in e.components:
        cj = {"role": c.role, "dtype": dtype_name(c.dtype), "shape": list(c.shape),
              "offset": c.offset, "size": c.size, "xxh3": hex64(c.xxh3)}
        if with_hex:
            cj["hex"] = f.component_bytes(c).hex()
        comps.append(cj)
    return {"name": e.name, "scheme": e.scheme, "dtype": dtype_name(e.dtype), "shape": list(e.shape),
            "params": [param_json(p) for p in e.params],
            "parts": [{"name": p.name, "start": p.start, "length": p.length} for p in e.parts],
            "components": comps}


def to_json(f: I2QFile, with_hex: bool = True) -> dict:
    return {"header": header_json(f.header),
            "entries": [entry_json(f, e, with_hex) for e in f.entries],
            "metadata": f.metadata}


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


@dataclass
class Tensor:
    """A tensor to write: its entry fields, and (role, dtype, shape, bytes) per component."""
    name: str
    scheme: str
    dtype: int | str
    shape: Sequence[int]
    components: list[tuple[str, int | str, Sequence[int], bytes]]
    params: list[Param] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)


def _code(dtype: int | str) -> int:
    return DTYPE_CODES[dtype] if isinstance(dtype, str) else dtype


def _align_up(x: int, a: int) -> int:
    return -(-x // a) * a


def layout(tensors: Sequence[Tensor], alignment: int) -> tuple[list[Entry], bytes]:
    """Places every component at the next multiple of `alignment` (relative to data_offset), in
    order, zero-padding between them. Returns the directory entries and the data section; the
    data section ends where the last component ends (after any padding before it)."""
    data = bytearray()
    entries = []
    for t in tensors:
        comps = []
        for role, dtype, shape, payload in t.components:
            offset = _align_up(len(data), alignment)
            data += bytes(offset - len(data))
            data += payload
            comps.append(Component(role, _code(dtype), tuple(shape), offset, len(payload), xxh3(payload)))
        entries.append(Entry(t.name, t.scheme, _code(t.dtype), tuple(t.shape),
                             list(t.params), list(t.parts), comps))
    return entries, bytes(data)


def _enc_str(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<I", len(b)) + b


def _enc_dims(shape: Sequence[int]) -> bytes:
    return struct.pack("<B", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)


def encode_entry(e: Entry) -> bytes:
    out = bytearray()
    out += _enc_str(e.name) + _enc_str(e.scheme) + struct.pack("<B", e.dtype) + _enc_dims(e.shape)
    out += struct.pack("<I", len(e.params))
    for p in e.params:
        out += _enc_str(p.key) + struct.pack("<B", p.type)
        out += _enc_str(p.value) if p.type == PARAM_STR else struct.pack("<Q", p.value_u64())
    out += struct.pack("<I", len(e.parts))
    for p in e.parts:
        out += _enc_str(p.name) + struct.pack("<QQ", p.start, p.length)
    out += struct.pack("<I", len(e.components))
    for c in e.components:
        out += _enc_str(c.role) + struct.pack("<B", c.dtype) + _enc_dims(c.shape)
        out += struct.pack("<QQQ", c.offset, c.size, c.xxh3)
    return bytes(out)


def encode_directory(entries: Sequence[Entry]) -> bytes:
    return b"".join(encode_entry(e) for e in entries)


def metadata_json_bytes(metadata: Any) -> bytes:
    """Deterministic JSON text: sorted keys, compact separators, UTF-8 (not \\u-escaped)."""
    return json.dumps(metadata, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def encode_metadata(metadata: Any, compress: bool, level: int = 19) -> tuple[bytes, bytes]:
    """Returns (stored bytes, raw bytes)."""
    raw = metadata_json_bytes(metadata)
    if not compress:
        return raw, raw
    cctx = zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=False, threads=0)
    return cctx.compress(raw), raw


def files_metadata(files: dict[str, bytes | str]) -> dict:
    """§5 "files": valid UTF-8 files use utf8, others base64."""
    out = {}
    for name, content in files.items():
        b = content.encode("utf-8") if isinstance(content, str) else content
        try:
            out[name] = {"encoding": "utf8", "data": b.decode("utf-8", errors="strict")}
        except UnicodeDecodeError:
            out[name] = {"encoding": "base64", "data": base64.b64encode(b).decode("ascii")}
    return out


def assemble(data: bytes, metadata_stored: bytes, metadata_raw_size: int, directory: bytes,
             tensor_count: int, *, alignment: int, flags: int,
             order: Sequence[str] = ("data", "metadata", "directory"),
             data_offset: int | None = None) -> tuple[Header, bytes]:
    """Lays out the three sections after the header in `order` (the data section at the next
    multiple of `alignment` ≥ 128, or at `data_offset` if given; the others packed back to back)
    and returns (header, file bytes) with both checksums computed."""
    body = {"data": data, "metadata": metadata_stored, "directory": directory}
    out = bytearray(HEADER_SIZE)
    offsets = {}
    for name in order:
        if name == "data":
            off = data_offset if data_offset is not None else _align_up(max(len(out), HEADER_SIZE), alignment)
            out += bytes(off - len(out))
        offsets[name] = len(out)
        out += body[name]
    h = Header(MAGIC, VERSION_MAJOR, VERSION_MINOR, flags, len(out), alignment,
               offsets["data"], len(data), offsets["metadata"], len(metadata_stored), metadata_raw_size,
               offsets["directory"], len(directory), tensor_count, xxh3(metadata_stored), 0, 0, 0)
    h = h.with_checksum(directory)
    out[:HEADER_SIZE] = h.pack()
    return h, bytes(out)


def write_file(tensors: Sequence[Tensor], metadata: Any, *, alignment: int = 4096,
               compress: bool = False, order: Sequence[str] = ("data", "metadata", "directory")) -> bytes:
    entries, data = layout(tensors, alignment)
    stored, raw = encode_metadata(metadata, compress)
    directory = encode_directory(entries)
    _, out = assemble(data, stored, len(raw), directory, len(entries), alignment=alignment,
                      flags=FLAG_ZSTD if compress else 0, order=order)
    I2QFile(out).verify_all()  # never write what we would not read back
    return out


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="validate FILE, verify every checksum, print it as JSON")
    d.add_argument("file")
    d.add_argument("--hex", action="store_true", help="include each component's bytes in hex")
    args = ap.parse_args(argv)
    try:
        f = I2QFile.open(args.file)
        f.verify_all()
        for name in f.metadata.get("files", {}):
            f.file_bytes(name)
    except FormatError as e:
        print(f"{args.file}: rejected: {e}", file=sys.stderr)
        return 1
    json.dump(to_json(f, with_hex=args.hex), sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
