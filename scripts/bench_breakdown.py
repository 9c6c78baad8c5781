"""Driver for scripts/bench-breakdown: where the CPU time of one
`run /bin/true` goes, per runtime, from perf samples of N runs."""
import collections, os, re, subprocess, sys

from bench_cache import from_disk

work, n, specs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
runtimes = [s.split("=", 1) for s in specs]
bundle = os.path.join(work, "bundle")
PERIOD_NS = 50_000  # one task-clock sample per 50 us of CPU

# Kernel entry points, inclusive of what they call; the rows are disjoint.
ROWS = [
    ("exec (kernel: execve, execveat)", ["__x64_sys_execve", "__x64_sys_execveat"]),
    ("clone and namespaces", ["__do_sys_clone", "__do_sys_clone3", "__x64_sys_unshare", "__x64_sys_setns"]),
    ("mounts, pivot_root", ["__x64_sys_mount", "__x64_sys_umount", "__do_sys_pivot_root", "__x64_sys_open_tree",
                            "__do_sys_move_mount", "__do_sys_fsopen", "__do_sys_fsconfig", "__do_sys_fsmount",
                            "__do_sys_mount_setattr"]),
    ("cgroupfs (mkdir, rmdir, files)", ["kernfs_iop_mkdir", "kernfs_iop_rmdir", "kernfs_fop_write_iter",
                                        "kernfs_fop_read_iter", "kernfs_fop_open"]),
    ("exit and wait", ["__x64_sys_exit_group", "__x64_sys_exit", "__do_sys_wait4", "__x64_sys_wait4"]),
]


def record(name, rt):
    data = os.path.join(work, f"{name}.perf")
    root = os.path.join(work, "root-" + name)
    loop = " ; ".join(f"{rt} --root {root} run --bundle {bundle} p{i} >/dev/null" for i in range(n))
    subprocess.run(["perf", "record", "-q", "-e", "task-clock", "-c", str(PERIOD_NS), "-g", "-o", data,
                    "--", "sh", "-c", loop], check=True, stderr=subprocess.DEVNULL)
    return data


def report(data, *args):
    out = subprocess.run(["perf", "report", "-i", data, "-q", "--stdio", "-g", "none", *args],
                         check=True, capture_output=True, text=True).stdout
    return out


def analyse(name, data):
    total = 0
    for line in subprocess.run(["perf", "script", "-i", data, "-F", "period"], capture_output=True,
                               text=True, check=True).stdout.split():
        total += int(line)
    ms = total / 1e6 / n  # CPU ms per container
    children = {}
    for line in report(data, "--children", "--sort", "sym").splitlines():
        m = re.match(r"\s*([\d.]+)%\s+([\d.]+)%\s+\[(.)\]\s+(\S+)", line)
        if m:
            children.setdefault(m.group(4), float(m.group(1)))
    by_dso = collections.Counter()
    for line in report(data, "--no-children", "--sort", "dso").splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(.+?)\s*$", line)
        if m:
            by_dso[m.group(2)] += float(m.group(1))
    rows = []
    syscalls = children.get("do_syscall_64", 0.0)
    rest = syscalls
    for label, syms in ROWS:
        pct = sum(children.get(s, 0.0) for s in syms)
        rest -= pct
        rows.append((label, pct))
    rows.append(("other syscalls (open, stat, readlink, mkdir, write, ...)", rest))
    faults = children.get("asm_exc_page_fault", 0.0)
    rows.append(("page faults", faults))
    kernel = by_dso.get("[kernel.kallsyms]", 0.0)
    rows.append(("other kernel (scheduler, interrupts, fork return)", max(0.0, kernel - syscalls - faults)))
    ld = sum(v for k, v in by_dso.items() if "ld-linux" in k)
    libc = sum(v for k, v in by_dso.items() if "libc.so" in k)
    user_other = 100.0 - kernel - ld - libc
    rows.append(("dynamic loader (user)", ld))
    rows.append(("libc (user)", libc))
    rows.append(("runtime and container code (user)", user_other))
    return ms, [(label, pct * ms / 100) for label, pct in rows]


def rss_breakdown(name, rt):
    """The runtime's memory at its createRuntime hook (config parsed,
    cgroups made, the init cloned: about its peak), from /proc/<pid>/smaps
    of the hook's parent, by mapping: kB of RSS."""
    import json
    hooked = os.path.join(work, "hooked")
    os.makedirs(hooked, exist_ok=True)
    cfg = json.load(open(os.path.join(bundle, "config.json")))
    cfg["root"]["path"] = os.path.join(bundle, "rootfs")
    out = os.path.join(work, f"{name}.smaps")
    cfg["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat /proc/$PPID/smaps > {out}"]}]}
    json.dump(cfg, open(os.path.join(hooked, "config.json"), "w"))
    subprocess.run([rt, "--root", os.path.join(work, "root-" + name), "run", "--bundle", hooked, "rss"],
                   stdout=subprocess.DEVNULL, check=True)
    kinds = collections.Counter()
    mapping = None
    for line in open(out):
        f = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+$", f[0]):
            path = f[5] if len(f) > 5 else ""
            if path in ("[heap]", "[stack]"):
                mapping = path[1:-1]
            elif path.startswith("["):
                mapping = "other"
            elif not path:
                mapping = "anonymous"
            elif re.search(r"/(ld-linux|libc\.so|libm\.so|libgcc_s)", path):
                mapping = "libc and loader"
            elif ".so" in path:
                mapping = "other shared libraries"
            else:
                mapping = "own binary"
        elif f[0] == "Rss:":
            kinds[mapping] += int(f[1])
    return kinds


results = {}
for name, rt in runtimes:
    from_disk(rt)
    subprocess.run([rt, "--root", os.path.join(work, "root-" + name), "run", "--bundle", bundle, "warm"],
                   stdout=subprocess.DEVNULL, check=True)
    results[name] = analyse(name, record(name, rt))

names = [name for name, _ in runtimes]
print(f"CPU ms per `run /bin/true`, {n} runs per runtime under perf (task-clock samples every "
      f"{PERIOD_NS // 1000} us, all processes of the run)")
print(f"{'step':58}" + "".join(f"{nm:>9}" for nm in names))
labels = [label for label, _ in results[names[0]][1]]
for i, label in enumerate(labels):
    print(f"{label:58}" + "".join(f"{results[nm][1][i][1]:9.2f}" for nm in names))
print(f"{'total':58}" + "".join(f"{results[nm][0]:9.2f}" for nm in names))

print()
print("Peak memory (RSS, kB) of the runtime process, by mapping, at its createRuntime hook")
rss = {name: rss_breakdown(name, rt) for name, rt in runtimes if name != "floor"}
kinds = ["own binary", "libc and loader", "other shared libraries", "heap", "anonymous", "stack", "other"]
print(f"{'mapping':58}" + "".join(f"{nm:>9}" for nm in rss))
for k in kinds:
    print(f"{k:58}" + "".join(f"{rss[nm][k]:9d}" for nm in rss))
print(f"{'total':58}" + "".join(f"{sum(rss[nm].values()):9d}" for nm in rss))
