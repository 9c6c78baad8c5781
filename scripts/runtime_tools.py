#!/usr/bin/env python3
# Runs every program of the opencontainers runtime-tools validation suite
# against one runtime, one program at a time, parses their TAP and compares
# the failures with the reviewed list of expected ones.
#
#   runtime_tools.py SUITE_DIR RUNTIME [--expected FILE] [--only NAME ...]
#                    [--timeout SECS] [--markdown FILE]
#
# SUITE_DIR is the built suite (where validation/<name>/<name>.t and
# runtimetest live). Prints a table (program, passed, failed, skipped,
# result), every failure with its assertion, and one closing line
# "runtime-tools: N passed, M failed" where M counts only the failures that
# are not on the expected list (those are counted apart). Exit status 1 when
# any failure is unexpected.
import argparse
import os
import re
import subprocess
import sys
import time

TAP_LINE = re.compile(r"^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?(.*)$")
WHOLE = "(program)"


def parse_tap(out):
    """Assertions of a program's TAP on stdout: (ok, description, skipped).
    Only lines at column 0 count: YAML diagnostics are indented, and they
    quote the inner runtimetest TAP."""
    res = []
    yaml_error = False
    in_yaml = False
    for line in out.splitlines():
        if line.startswith("  ---"):
            in_yaml = True
            continue
        if in_yaml:
            if line.startswith("  ..."):
                in_yaml = False
            elif re.match(r'^\s+"?error"?\s*:', line):
                yaml_error = True
            continue
        m = TAP_LINE.match(line)
        if not m:
            continue
        ok = m.group(1) == "ok"
        desc = m.group(3).strip()
        skipped = bool(re.search(r"#\s*skip", desc, re.I))
        desc = re.sub(r"\s*#\s*(skip|todo)\b.*$", "", desc, flags=re.I).strip()
        res.append((ok, desc, skipped))
    return res, yaml_error


def first_error(out, err):
    """The first error text a program printed, for the failure list."""
    for line in out.splitlines():
        m = re.match(r'^\s+"?error"?\s*:\s*(.*)$', line)
        if m:
            return m.group(1).strip().strip(",").strip("'\"").replace("\\n", " / ")
    lines = [l for l in err.splitlines() if l.strip()]
    return " / ".join(lines[:3])[:300]


def load_expected(path):
    """program :: assertion :: reason, one per line; # comments."""
    exp = {}
    if not path:
        return exp
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = [p.strip() for p in line.split("::")]
            if len(parts) != 3 or not all(parts):
                sys.exit(f"{path}:{n}: expected 'program :: assertion :: reason'")
            exp[(parts[0], parts[1])] = parts[2]
    return exp


def run_program(suite, name, runtime, timeout):
    prog = os.path.join("validation", name, f"{name}.t")
    env = dict(os.environ, RUNTIME=runtime)
    t0 = time.monotonic()
    try:
        p = subprocess.run(
            [prog], cwd=suite, env=env, capture_output=True, text=True,
            errors="replace", timeout=timeout, stdin=subprocess.DEVNULL,
        )
        out, err, rc = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        rc = None
    return out, err, rc, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("suite")
    ap.add_argument("runtime")
    ap.add_argument("--expected")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--timeout", type=int, default=180)
    ap.add_argument("--markdown")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()

    names = sorted(os.listdir(os.path.join(a.suite, "validation")))
    names = [n for n in names if os.path.exists(os.path.join(a.suite, "validation", n, f"{n}.t"))]
    if a.only:
        names = [n for n in names if n in a.only]
    expected = load_expected(a.expected)

    rows = []
    failures = []  # (program, assertion, detail, expected_reason)
    total_pass = total_fail = total_skip = total_expected = 0
    for name in names:
        out, err, rc, secs = run_program(a.suite, name, a.runtime, a.timeout)
        asserts, yaml_error = parse_tap(out)
        p = sum(1 for ok, _, s in asserts if ok and not s)
        s = sum(1 for _, _, sk in asserts if sk)
        fails = [(d, "") for ok, d, sk in asserts if not ok and not sk]
        whole = None
        if rc is None:
            whole = f"timed out after {a.timeout}s"
        elif rc != 0:
            whole = f"exit {rc}: {first_error(out, err)}"
        elif not asserts and yaml_error:
            whole = first_error(out, err)
        if whole:
            fails.append((WHOLE, whole))
        unexpected = 0
        for desc, detail in fails:
            reason = expected.get((name, desc))
            failures.append((name, desc, detail, reason))
            if reason:
                total_expected += 1
            else:
                unexpected += 1
        if not asserts and not whole:
            # A program that reports only failures (the hook programs): a
            # clean exit with no error diagnostic is its one pass.
            p = 1
        total_pass += p
        total_skip += s
        total_fail += unexpected
        result = "ok" if not fails else ("FAIL" if unexpected else "expected")
        rows.append((name, p, len(fails), s, result, secs))
        if a.verbose:
            sys.stdout.write(out)
            sys.stderr.write(err)
        print(f"{name:<40} {p:>5} {len(fails):>5} {s:>5}  {result:<8} {secs:5.1f}s", flush=True)

    print()
    for name, desc, detail, reason in failures:
        tag = "expected" if reason else "UNEXPECTED"
        extra = f" ({detail})" if detail else ""
        print(f"{tag}: {name} :: {desc}{extra}")
    seen = {(n, d) for n, d, _, _ in failures}
    stale = [k for k in expected if k[0] in names and k not in seen]
    for n, d in stale:
        print(f"note: expected failure did not happen: {n} :: {d}")
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write("| program | passed | failed | skipped | result |\n|---|---:|---:|---:|---|\n")
            for name, p, fl, s, result, _ in rows:
                f.write(f"| {name} | {p} | {fl} | {s} | {result} |\n")
            f.write("\nFailures:\n\n")
            for name, desc, detail, reason in failures:
                extra = f" ({detail})" if detail else ""
                f.write(f"- {name} :: {desc}{extra}" + (f" — expected: {reason}" if reason else "") + "\n")
    print(f"runtime-tools: {total_expected} expected failures (listed in {a.expected or 'no file'}), {total_skip} skipped")
    print(f"runtime-tools: {total_pass} passed, {total_fail} failed")
    return 1 if total_fail else 0


if __name__ == "__main__":
    sys.exit(main())
