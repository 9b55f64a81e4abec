"""What the Python scripts under scripts/ share (standard library only, so any venv can import it).

A script one folder below scripts/ (scripts/fixtures/, scripts/checks/, ...) imports it with

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
    from i2qscripts import REPO, log  # noqa: E402

which works from any working directory. Nothing here changes what a script computes or writes:
each helper is the code the scripts repeated, with the script's own choices (indent, key order,
encoding, exact or prefix version match) passed as arguments.
"""

import hashlib
import json
import os
import sys

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # scripts/
REPO = os.path.dirname(SCRIPTS)  # the repository root


def log(*a):
    """print to stdout, flushed (progress lines of the long-running scripts)."""
    print(*a, flush=True)


def log_err(*a):
    """print to stderr, flushed."""
    print(*a, file=sys.stderr, flush=True)


def pin(name, got, want, prefix=False):
    """Assert a pinned version: got == want, or got.startswith(want) with prefix=True (torch's
    PyPI wheel reports e.g. "2.15.0+cu132")."""
    assert (got.startswith(want) if prefix else got == want), f"{name} {got} != pinned {want}"


def sha256_file(path):
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path, obj, indent=2, encoding=None, **dump_kw):
    """A JSON golden: json.dump(obj, indent=indent, **dump_kw) and a final newline. encoding=None
    opens the file as open(path, "w") does (the locale's encoding)."""
    with open(path, "w", encoding=encoding) as f:
        json.dump(obj, f, indent=indent, **dump_kw)
        f.write("\n")


def manifest_files(folder, skip="MANIFEST.json"):
    """Every file under folder except `skip` (relative path), as {"path", "sha256", "size"}, sorted
    by path: the "files" list of the MANIFEST.json files the fixture generators write."""
    files = []
    for root, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(root, n)
            rel = os.path.relpath(p, folder)
            if rel != skip:
                files.append({"path": rel, "sha256": sha256_file(p), "size": os.path.getsize(p)})
    files.sort(key=lambda f: f["path"])
    return files
