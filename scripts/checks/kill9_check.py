#!/usr/bin/env python3
"""kill -9 / concurrent-writer acceptance check for every writing verb of i2q (stdlib only).

For each writing verb:
  * run it once uninterrupted (twice, to check determinism): duration T and the reference output
    (sha256 of the file, or of every file in the directory, sorted by relative path);
  * SIGKILL it at >= --moments moments spread over the run (T*k/(moments+1), plus a few very early
    moments, plus --write-moments kills triggered by the partial's appearance, delayed over the
    window in which a probe run saw the `.BASENAME.*` temporaries; a moment where the process had already exited is counted as "finished before
    kill" and replaced by a bisected earlier one), and after each kill check that the output name holds
    nothing, or the complete output (a kill after the rename, before the process exited);
  * rerun the same command without deleting the leftovers (only a complete OUT is removed first,
    for verbs that refuse an existing output) and check: exit 0, output == reference, and the
    output's directory holds nothing but OUT (no `.BASENAME.*` partial/lock files, no
    `OUT.awq-state`);
  * start two identical writers on a fresh OUT (no --overwrite) 5 times at once and once 0.2*T
    apart: exactly one must exit 0, the other nonzero with a message.

Each verb writes into its own directory WORK/out/<verb>/ so "the directory holds nothing but OUT"
is an exact check. Inputs for fuse/export/verify are built once into WORK/ (pre-*.i2q).

`verify --report` and `run --logits-out` replace an existing output by design (documented in their
--help / sources), so for them two concurrent writers may both succeed; that is reported as a note
("both ok: replaces by design"), not a violation, unless --strict-replace is given.

Usage: python3 scripts/checks/kill9_check.py [--i2q PATH] [--work DIR] [--moments 20] [--verbs a,b]
                                     [--json OUT.json] [--strict-replace]
Exit status 1 if any violation.
"""

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from i2qscripts import REPO, log  # noqa: E402

FIX = "Tests/Fixtures/easy-vqa-idefics2"
TRAIN = ".cache/easy-vqa/train"
TEST = ".cache/easy-vqa/test"
SMOL = ".cache/smollm2/SmolLM2-135M-Instruct-f32"
PROMPT = "User:<image>what is the red shape?<end_of_utterance>\nAssistant:"


# ---------------------------------------------------------------- hashing / normalisation

TIME_KEY = re.compile(r"(second|seconds|time|elapsed|_s$|per_s|tok_s|duration)", re.I)
TIME_TEXT = re.compile(r"\b\d+(\.\d+)?\s*(s|ms|tok/s|MB/s)\b")


def _strip_times(v):
    if isinstance(v, dict):
        return {k: _strip_times(x) for k, x in v.items() if not TIME_KEY.search(k)}
    if isinstance(v, list):
        return [_strip_times(x) for x in v]
    return v


def file_digest(path, normalize):
    with open(path, "rb") as f:
        data = f.read()
    if normalize:
        name = os.path.basename(path)
        if name.endswith(".json"):
            try:
                data = json.dumps(_strip_times(json.loads(data)), sort_keys=True).encode()
            except ValueError:
                pass
        elif name.endswith(".md") or name.endswith(".txt"):
            data = TIME_TEXT.sub("<t>", data.decode("utf-8", "replace")).encode()
    return hashlib.sha256(data).hexdigest()


def digest(path, normalize=False):
    """sha256 of a file, or {relpath: sha256} of every file under a directory; None if absent."""
    if not os.path.lexists(path):
        return None
    if os.path.isdir(path):
        out = {}
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for fn in sorted(files):
                p = os.path.join(root, fn)
                out[os.path.relpath(p, path)] = file_digest(p, normalize)
        return out
    return file_digest(path, normalize)


def same(a, b, mode):
    """mode: exact | normalized (timings stripped) | filelist."""
    if a is None or b is None:
        return False
    if mode == "filelist":
        if isinstance(a, dict) and isinstance(b, dict):
            return sorted(a) == sorted(b)
        return type(a) == type(b)
    return a == b


# ---------------------------------------------------------------- verbs


class Verb:
    def __init__(self, name, argv, out, replaces=False, awq=False, requires=()):
        self.name = name
        self.argv = argv            # list, with "{OUT}" where the output path goes
        self.out_base = out         # basename of the output
        self.replaces = replaces    # replaces an existing output by design
        self.awq = awq
        self.requires = requires    # repo-relative paths that must exist

    def out_path(self, work):
        return os.path.join(work, "out", self.name, self.out_base)

    def command(self, i2q, out):
        return [i2q] + [a.replace("{OUT}", out) for a in self.argv]


def verbs(work, i2q):
    helps = {}

    def has_flag(verb, flag):
        if verb not in helps:
            r = subprocess.run([i2q, verb, "--help"], cwd=REPO, capture_output=True, text=True)
            helps[verb] = r.stdout + r.stderr
        return re.search(re.escape(flag) + r"\b", helps[verb]) is not None

    def np(verb):
        return ["--no-progress"] if has_flag(verb, "--no-progress") else []

    pre = lambda n: os.path.join(work, n)
    gguf_type = ["--type", "q8_0"] if has_flag("export", "--type") else []
    V = [
        Verb("cast-i2q", ["cast", FIX, "--dtype", "bf16", "-o", "{OUT}"] + np("cast"), "cast.i2q"),
        Verb("cast-hf", ["cast", FIX, "--dtype", "f16", "--format", "safetensors", "-o", "{OUT}"] + np("cast"), "cast-hf"),
        Verb("nf4", ["quantize", FIX, "--nf4", "-o", "{OUT}"] + np("quantize"), "nf4.i2q"),
        Verb("rtn", ["quantize", FIX, "--rtn", "--group-size", "64", "-o", "{OUT}"] + np("quantize"), "rtn.i2q"),
        Verb("awq", ["quantize", FIX, "--awq", "--group-size", "64", "--calibration", TRAIN, "--samples", "16",
                     "-o", "{OUT}"] + np("quantize"), "awq.i2q", awq=True, requires=(TRAIN,)),
        Verb("fuse", ["fuse", pre("pre-rtn.i2q"), "-o", "{OUT}"] + np("fuse"), "fused.i2q"),
        Verb("export-hf", ["export", pre("pre-bf16.i2q"), "--to", "hf", "-o", "{OUT}"] + np("export"), "exp-hf"),
        Verb("export-bnb", ["export", pre("pre-nf4.i2q"), "--to", "hf-bnb", "-o", "{OUT}"] + np("export"), "exp-bnb"),
        Verb("export-awq", ["export", pre("pre-rtn.i2q"), "--to", "hf-awq", "-o", "{OUT}"] + np("export"), "exp-awq"),
        Verb("export-gguf", ["export", SMOL, "--to", "gguf"] + gguf_type + ["-o", "{OUT}"] + np("export"), "exp.gguf",
             requires=(SMOL,)),
        Verb("verify", ["verify", pre("pre-bf16.i2q"), "--reference", FIX, "--docvqa", TEST, "--samples", "20",
                        "--max-new-tokens", "4", "--report", "{OUT}"] + np("verify"), "report",
             replaces=True, requires=(TEST,)),
        Verb("run", ["run", FIX, "--image", TEST + "/images/0.png", "--prompt", PROMPT, "--max-new-tokens", "4",
                     "--logits-out", "{OUT}"] + np("run"), "logits.npy", replaces=True, requires=(TEST,)),
    ]
    return V


# ---------------------------------------------------------------- process helpers


class Proc:
    def __init__(self, cmd, logbase):
        self.cmd = cmd
        self.o = open(logbase + ".out", "wb")
        self.e = open(logbase + ".err", "wb")
        self.errpath = logbase + ".err"
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=self.o, stderr=self.e,
                                  start_new_session=True)
        self.t_end = None

    def wait(self, timeout):
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.p.pid, signal.SIGKILL)
            self.p.wait()
            rc = "timeout"
        self.t_end = time.monotonic()
        self.o.close()
        self.e.close()
        return rc

    def kill9(self):
        """SIGKILL this process (by its own PID only). Returns the seconds since start at the kill."""
        t = time.monotonic() - self.t0
        try:
            os.kill(self.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return t

    def stderr_first_line(self):
        try:
            with open(self.errpath, "rb") as f:
                lines = [l.strip() for l in f.read().decode("utf-8", "replace").splitlines() if l.strip()]
        except OSError:
            return ""
        for l in lines:
            if "rror" in l or "another i2q" in l or "exists" in l:
                return l
        return lines[0] if lines else ""

    def stderr_tail(self, n=3):
        try:
            with open(self.errpath, "rb") as f:
                return f.read().decode("utf-8", "replace").strip().splitlines()[-n:]
        except OSError:
            return []


def run_once(cmd, logbase, timeout):
    p = Proc(cmd, logbase)
    rc = p.wait(timeout)
    return rc, p.t_end - p.t0, p


def probe_write_window(cmd, d, base, logbase, timeout):
    """Runs cmd while polling d: (first, last) seconds since start at which the `.BASE.i2q-partial-*`
    partial was seen, or None."""
    p = Proc(cmd, logbase)
    first = last = None
    prefix = "." + base + ".i2q-partial-"
    while p.p.poll() is None and time.monotonic() - p.t0 < timeout:
        try:
            names = os.listdir(d)
        except OSError:
            names = []
        if any(n.startswith(prefix) for n in names):
            t = time.monotonic() - p.t0
            first = t if first is None else first
            last = t
        time.sleep(0.0005)
    rc = p.wait(timeout)
    return rc, (first, last) if first is not None else None


def rmtree(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def reset_dir(d):
    rmtree(d)
    os.makedirs(d)


def entries(d):
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def anon(names, pids=()):
    """Leftover names with PIDs replaced by 'PID' (for the log)."""
    return [re.sub(r"i2q-partial-\d+", "i2q-partial-PID", n) for n in names]


# ---------------------------------------------------------------- checks per verb


def check_clean(verb, out, violations, ctx):
    """After a successful run: the directory holds exactly OUT."""
    d = os.path.dirname(out)
    base = os.path.basename(out)
    extra = [n for n in entries(d) if n != base]
    stale = [n for n in extra if n.startswith("." + base + ".")]
    if stale:
        violations.append(f"{ctx}: stale entries after a successful run: {anon(stale)}")
    if os.path.lexists(out + ".awq-state"):
        violations.append(f"{ctx}: {base}.awq-state still exists after a successful run")
    other = [n for n in extra if n not in stale and n != base + ".awq-state"]
    if other:
        violations.append(f"{ctx}: unexpected entries beside the output: {other}")


def kill_test(verb, i2q, work, T, ref, mode, moments, timeout, logdir, window, n_window):
    out = verb.out_path(work)
    d = os.path.dirname(out)
    base = os.path.basename(out)
    cmd = verb.command(i2q, out)
    results = []
    violations = []
    queue = [T * k / (moments + 1) for k in range(1, moments + 1)]
    early = [0.0, 0.002, 0.005, 0.01, 0.02, 0.04] if T < 2 else [0.0, 0.01, 0.05, 0.1]
    queue = early + queue
    if n_window:
        # extra kills in the write phase: triggered when the partial appears, then after a delay
        # spread over the window in which a probe run saw the temporaries
        span = (window[1] - window[0]) if window else 0.0
        queue += [("trigger", span * k / n_window) for k in range(n_window)]
    base_n = len(queue)
    real = []            # moments (scheduled) that produced a real kill
    finished = 0
    attempts = 0
    max_attempts = 4 * moments + base_n
    while queue and attempts < max_attempts:
        m = queue.pop(0)
        attempts += 1
        reset_dir(d)
        tag = f"{verb.name}-kill{attempts:03d}"
        p = Proc(cmd, os.path.join(logdir, tag))
        if isinstance(m, tuple):
            # triggered: poll until `.BASE.i2q-partial-*` appears, then wait m[1] seconds
            prefix = "." + base + ".i2q-partial-"
            seen = None
            while p.p.poll() is None and time.monotonic() - p.t0 < timeout:
                try:
                    if any(n.startswith(prefix) for n in os.listdir(d)):
                        seen = time.monotonic() - p.t0
                        break
                except OSError:
                    pass
                time.sleep(0.0002)
            if seen is not None and m[1] > 0:
                time.sleep(m[1])
            label = f"partial+{m[1]:.4f}s"
            rec = {"moment": label, "partial_seen_at": round(seen, 4) if seen is not None else None}
        else:
            # sleep until the moment (measured from just before Popen)
            rest = m - (time.monotonic() - p.t0)
            if rest > 0:
                time.sleep(rest)
            label = f"{m:.4f}s"
            rec = {"moment": round(m, 4)}
        t_kill = p.kill9()
        rc = p.wait(timeout)
        rec.update({"t_kill": round(t_kill, 4), "rc": rc})
        if rc != -signal.SIGKILL:
            finished += 1
            rec["outcome"] = "finished before kill"
            results.append(rec)
            if rc != 0:
                violations.append(f"kill@{label}: exited {rc} before the kill: {p.stderr_tail(1)}")
            if not isinstance(m, tuple):
                # replace by a moment bisected into the earlier part of the run
                lower = max([r for r in real if not isinstance(r, tuple) and r < m], default=0.0)
                queue.append((lower + m) / 2)
            continue
        real.append(m)
        rec["outcome"] = "killed"
        after = entries(d)
        rec["left_after_kill"] = anon(after)
        rec["partial_present"] = any(".i2q-partial-" in n for n in after)
        ctx = f"kill@{label} (actual {t_kill:.4f}s after start)"
        if os.path.lexists(out):
            got = digest(out, normalize=(mode == "normalized"))
            if same(got, ref, mode):
                rec["out_after_kill"] = "complete (killed after the rename)"
            else:
                rec["out_after_kill"] = "INCOMPLETE"
                violations.append(f"{ctx}: {base} exists after SIGKILL and differs from the reference "
                                  f"(partial output under the final name)")
            if not verb.replaces:
                rmtree(out)  # else the rerun would (rightly) refuse an existing output
        else:
            rec["out_after_kill"] = "absent"
        # rerun, leftovers kept
        rc2, dt2, p2 = run_once(cmd, os.path.join(logdir, tag + "-rerun"), timeout)
        rec["rerun_rc"] = rc2
        rec["rerun_s"] = round(dt2, 3)
        if rc2 != 0:
            violations.append(f"{ctx}: rerun exited {rc2}: {p2.stderr_tail(2)} (leftovers: {anon(after)})")
        else:
            got = digest(out, normalize=(mode == "normalized"))
            if not same(got, ref, mode):
                violations.append(f"{ctx}: rerun output differs from the reference (leftovers were {anon(after)})")
            check_clean(verb, out, violations, ctx + " rerun")
        results.append(rec)
        # keep topping up the queue if too few real kills remain scheduled
        if not queue and len(real) < moments and attempts < max_attempts:
            timed = [r for r in real if not isinstance(r, tuple)]
            queue.append(max(timed) / 2 if timed else T / 4)
    return results, violations, len(real), finished


def concurrency_test(verb, i2q, work, T, ref, mode, timeout, logdir, repeats, strict_replace):
    out = verb.out_path(work)
    d = os.path.dirname(out)
    cmd = verb.command(i2q, out)
    trials = []
    violations = []
    notes = []
    for i in range(repeats + 1):
        stagger = 0.0 if i < repeats else 0.2 * T
        reset_dir(d)
        tag = f"{verb.name}-conc{i}"
        a = Proc(cmd, os.path.join(logdir, tag + "a"))
        if stagger:
            time.sleep(stagger)
        b = Proc(cmd, os.path.join(logdir, tag + "b"))
        ra = a.wait(timeout)
        rb = b.wait(timeout)
        rec = {"stagger_s": round(stagger, 4), "rc": [ra, rb]}
        ctx = f"concurrent #{i + 1} (stagger {stagger:.3f}s)"
        oks = [r == 0 for r in (ra, rb)]
        if sum(oks) == 1:
            loser = b if oks[0] else a
            rec["loser"] = "second" if oks[0] else "first"
            rec["loser_msg"] = loser.stderr_first_line()
            if not rec["loser_msg"]:
                violations.append(f"{ctx}: the loser exited {rb if oks[0] else ra} without a message")
        elif sum(oks) == 2:
            rec["loser"] = None
            if verb.replaces and not strict_replace:
                notes.append(f"{ctx}: both exited 0 (the verb replaces its output by design)")
            else:
                violations.append(f"{ctx}: both writers exited 0")
        else:
            violations.append(f"{ctx}: neither succeeded: rc {ra} {a.stderr_tail(1)}, rc {rb} {b.stderr_tail(1)}")
        got = digest(out, normalize=(mode == "normalized"))
        if any(oks) and not same(got, ref, mode):
            violations.append(f"{ctx}: output after the race differs from the reference")
        if any(oks):
            check_clean(verb, out, violations, ctx)
        trials.append(rec)
    return trials, violations, notes


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--i2q", help="i2q binary (default: a private copy of .build/release/i2q)")
    ap.add_argument("--work", default="/tmp/kill9")
    ap.add_argument("--moments", type=int, default=20)
    ap.add_argument("--verbs", default="", help="comma list of verb ids (default all)")
    ap.add_argument("--json", default="")
    ap.add_argument("--write-moments", type=int, default=5,
                    help="extra kills triggered when the partial appears (delays spread over the window a probe run saw)")
    ap.add_argument("--concurrency", type=int, default=5, help="simultaneous-start races per verb")
    ap.add_argument("--strict-replace", action="store_true",
                    help="count 'both succeeded' as a violation also for verify/run, which replace by design")
    args = ap.parse_args()

    priv = tempfile.mkdtemp(prefix="kill9-bin-")
    if args.i2q:
        i2q = os.path.abspath(args.i2q)
    else:
        src = os.path.join(REPO, ".build/release/i2q")
        if not os.path.exists(src):
            sys.exit(f"{src} missing: build i2q or pass --i2q")
        i2q = os.path.join(priv, "i2q")
        shutil.copy2(src, i2q)
    shown = args.i2q if args.i2q else ".build/release/i2q"
    with open(i2q, "rb") as f:
        bin_sha = hashlib.sha256(f.read()).hexdigest()
    work = os.path.abspath(args.work)
    rmtree(work)
    os.makedirs(work)
    logdir = os.path.join(work, "logs")
    os.makedirs(logdir)
    log(f"i2q: {i2q} (sha256 {bin_sha[:16]}), work: {work}")

    if not os.path.isdir(os.path.join(REPO, TRAIN)) or not os.path.isdir(os.path.join(REPO, TEST)):
        log("easy-vqa data missing: bash scripts/get_easy_vqa.sh")
        subprocess.run(["bash", "scripts/get_easy_vqa.sh"], cwd=REPO, check=False)

    all_verbs = verbs(work, i2q)
    wanted = [v.strip() for v in args.verbs.split(",") if v.strip()]
    unknown = [w for w in wanted if w not in [v.name for v in all_verbs]]
    if unknown:
        sys.exit(f"unknown verbs {unknown}; known: {[v.name for v in all_verbs]}")
    sel = [v for v in all_verbs if not wanted or v.name in wanted]

    # prerequisites (inputs of fuse / export / verify)
    pre = [("pre-bf16.i2q", ["cast", FIX, "--dtype", "bf16"]),
           ("pre-nf4.i2q", ["quantize", FIX, "--nf4"]),
           ("pre-rtn.i2q", ["quantize", FIX, "--rtn", "--group-size", "64"])]
    for name, argv in pre:
        rc, dt, p = run_once([i2q] + argv + ["-o", os.path.join(work, name), "--no-progress"],
                             os.path.join(logdir, "prereq-" + name), 600)
        log(f"prereq {name}: rc {rc} in {dt:.2f}s")
        if rc != 0:
            log("  " + " | ".join(p.stderr_tail(3)))

    report = {"i2q": i2q, "i2q_sha256": bin_sha, "work": work, "moments": args.moments, "verbs": {}}
    any_violation = False
    t_start = time.monotonic()
    for v in sel:
        r = {"command": "cd " + REPO + " && " + shlex.join(v.command(shown, v.out_path(work)))}
        report["verbs"][v.name] = r
        missing = [q for q in v.requires if not os.path.exists(os.path.join(REPO, q))]
        if missing:
            r["skipped"] = f"missing {missing}"
            log(f"\n== {v.name}: SKIPPED ({r['skipped']})")
            continue
        log(f"\n== {v.name}: {r['command']}")
        out = v.out_path(work)
        d = os.path.dirname(out)
        # baseline x2 (determinism)
        refs, times = [], []
        base_fail = None
        for i in range(2):
            reset_dir(d)
            rc, dt, p = run_once(v.command(i2q, out), os.path.join(logdir, f"{v.name}-base{i}"), 900)
            if rc != 0:
                base_fail = f"exit {rc}: {' | '.join(p.stderr_tail(3))}"
                break
            times.append(dt)
            refs.append((digest(out), digest(out, normalize=True)))
            viol = []
            check_clean(v, out, viol, "baseline")
            if viol:
                base_fail = "; ".join(viol)
                break
        if base_fail:
            r["baseline_failed"] = base_fail
            r["violations"] = [f"uninterrupted run failed: {base_fail}"]
            any_violation = True
            log(f"   baseline FAILED: {base_fail}")
            continue
        if refs[0][0] == refs[1][0]:
            mode, ref = "exact", refs[0][0]
        elif refs[0][1] == refs[1][1]:
            mode, ref = "normalized", refs[0][1]
        else:
            mode, ref = "filelist", refs[0][0]
        T = statistics.mean(times)
        r["T_s"] = round(T, 3)
        r["compare"] = mode
        r["reference"] = ref
        log(f"   T = {T:.3f}s (runs {', '.join(f'{t:.3f}' for t in times)}), compare: {mode}")
        timeout = max(120.0, 30 * T)
        reset_dir(d)
        _, window = probe_write_window(v.command(i2q, out), d, os.path.basename(out),
                                       os.path.join(logdir, f"{v.name}-probe"), timeout)
        r["write_window_s"] = [round(x, 4) for x in window] if window else None
        log(f"   partial seen during {r['write_window_s']} s of a probe run")

        kills, kviol, nreal, nfin = kill_test(v, i2q, work, T, ref, mode, args.moments, timeout, logdir,
                                               window, args.write_moments)
        r["kills"] = kills
        r["real_kills"] = nreal
        r["finished_before_kill"] = nfin
        r["kills_with_partial"] = sum(1 for k in kills if k.get("partial_present"))
        r["kills_after_rename"] = sum(1 for k in kills if k.get("out_after_kill", "").startswith("complete"))
        log(f"   kills: {nreal} real, {nfin} finished before the kill, {len(kviol)} violation(s)")
        n_after = sum(1 for k in kills if k.get("out_after_kill", "").startswith("complete"))
        if n_after:
            log(f"   ({n_after} kill(s) landed after the rename, output complete)")
        if nreal < args.moments:
            kviol.append(f"only {nreal} real kills (< {args.moments})")

        conc, cviol, cnotes = concurrency_test(v, i2q, work, T, ref, mode, timeout, logdir,
                                               args.concurrency, args.strict_replace)
        r["concurrency"] = conc
        r["concurrency_notes"] = cnotes
        ones = sum(1 for c in conc if [x == 0 for x in c["rc"]].count(True) == 1)
        r["concurrency_summary"] = f"{ones}/{len(conc)} exactly one ok"
        msgs = sorted({re.sub(r"PID \d+", "PID n", c["loser_msg"]) for c in conc if c.get("loser_msg")})
        r["loser_messages"] = msgs
        log(f"   concurrency: {r['concurrency_summary']}" + (f" ({len(cnotes)} note(s))" if cnotes else ""))
        for m in msgs:
            log(f"     loser: {m}")
        r["violations"] = kviol + cviol
        for x in r["violations"]:
            log(f"   VIOLATION {x}")
        if r["violations"]:
            any_violation = True
        reset_dir(d)

    report["total_s"] = round(time.monotonic() - t_start, 1)
    # table
    log("\n%-12s %7s %6s %6s %6s %6s %-10s %-30s %s" % ("verb", "T(s)", "kills", "w/part", "renamd", "fin<k",
                                                        "compare", "concurrency (5 + staggered)", "violations"))
    for name, r in report["verbs"].items():
        if "skipped" in r:
            log("%-12s %s" % (name, "skipped: " + r["skipped"]))
            continue
        if "baseline_failed" in r:
            log("%-12s %s" % (name, "BASELINE FAILED: " + r["baseline_failed"]))
            continue
        cs = r["concurrency_summary"] + (" (+replace)" if r["concurrency_notes"] else "")
        log("%-12s %7.3f %6d %6d %6d %6d %-10s %-30s %d" % (name, r["T_s"], r["real_kills"], r["kills_with_partial"],
                                                            r["kills_after_rename"], r["finished_before_kill"],
                                                            r["compare"], cs, len(r["violations"])))
    log(f"\ntotal {report['total_s']}s; {'VIOLATIONS' if any_violation else 'no violations'}")
    report["ok"] = not any_violation
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        log(f"wrote {args.json}")
    shutil.rmtree(priv, ignore_errors=True)
    sys.exit(1 if any_violation else 0)


if __name__ == "__main__":
    main()
