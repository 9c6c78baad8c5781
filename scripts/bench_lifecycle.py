"""Driver for scripts/bench-lifecycle: interleaved runs, medians, ratios."""
import ctypes, os, resource, statistics, sys, time

from bench_cache import from_disk

work, n, specs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
runtimes = [s.split("=", 1) for s in specs]
bundle = os.path.join(work, "bundle")
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36
libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # the container init is reaped by us
devnull = os.open(os.devnull, os.O_RDWR)


def spawn(argv):
    """Runs argv with stdio on /dev/null; returns (status, rusage of it and its reaped descendants).

    posix_spawn, not fork: a forked child of this Python process would tear
    down its copy of Python's memory at execve, about 2 ms of CPU charged to
    the command measured (here 2.7 ms for /bin/true against 0.65 ms spawned),
    which no real client adds (Go's os/exec, containerd's, spawns with
    CLONE_VFORK) and which would pull every ratio towards 1."""
    actions = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1)]
    if not os.environ.get("BENCH_DEBUG"):
        actions.append((os.POSIX_SPAWN_DUP2, devnull, 2))
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
    _, status, ru = os.wait4(pid, 0)
    return status, ru


def peak_rss_kib(argv):
    """Peak RSS of argv and the descendants it reaps, measured by GNU time.

    A child of this Python process would report Python's own RSS
    (ru_maxrss survives exec), so the command is forked by the small `time`
    program instead."""
    out = os.path.join(work, "rss")
    st, _ = spawn(["/usr/bin/time", "-f", "%M", "-o", out] + argv)
    check(st, " ".join(argv[:4]))
    return int(open(out).read().split()[-1])


def check(status, what):
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{what} failed with status {status}")


def run_true(name, rt, root, i):
    cid = f"b{i}"
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    st, _ = spawn([rt, "--root", root, "run", "--bundle", bundle, cid])
    t1, c1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    check(st, f"{name} run")
    cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    return t1 - t0, cpu


def lifecycle(name, rt, root, i):
    cid = f"l{i}"
    pidfile = os.path.join(work, f"{name}.pid")
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    st, _ = spawn([rt, "--root", root, "create", "--bundle", bundle, "--pid-file", pidfile, cid])
    check(st, f"{name} create")
    pid = int(open(pidfile).read())
    st, _ = spawn([rt, "--root", root, "start", cid])
    check(st, f"{name} start")
    os.waitpid(pid, 0)  # reparented to us (subreaper): no polling
    st, _ = spawn([rt, "--root", root, "delete", cid])
    check(st, f"{name} delete")
    t1, c1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    return t1 - t0, cpu


def exec_true(name, rt, root, i):
    """`exec` of /bin/true into the runtime's running container (`e-NAME`: the ids differ per runtime, since
    each one's default cgroup path is the id),
    what Kubernetes' exec probes do."""
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    st, _ = spawn([rt, "--root", root, "exec", f"e-{name}", "/bin/true"])
    t1, c1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    check(st, f"{name} exec")
    cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    return t1 - t0, cpu


def start_sleeper(name, rt, root):
    """The long-running container that exec_true enters."""
    pidfile = os.path.join(work, f"{name}.sleeper.pid")
    st, _ = spawn([rt, "--root", root, "create", "--bundle", os.path.join(work, "sleeper"), "--pid-file", pidfile, f"e-{name}"])
    check(st, f"{name} create e-{name}")
    st, _ = spawn([rt, "--root", root, "start", f"e-{name}"])
    check(st, f"{name} start e-{name}")
    return int(open(pidfile).read())


def stop_sleeper(name, rt, root, pid):
    st, _ = spawn([rt, "--root", root, "kill", f"e-{name}", "KILL"])
    check(st, f"{name} kill e-{name}")
    os.waitpid(pid, 0)
    st, _ = spawn([rt, "--root", root, "delete", f"e-{name}"])
    check(st, f"{name} delete e-{name}")


def rss_exec(name, rt, root, i):
    return peak_rss_kib([rt, "--root", root, "exec", f"e-{name}", "/bin/true"])


def rss_run(name, rt, root, i):
    return peak_rss_kib([rt, "--root", root, "run", "--bundle", bundle, f"r{i}"])


def rss_lifecycle(name, rt, root, i):
    cid, pidfile = f"m{i}", os.path.join(work, "rss.pid")
    a = peak_rss_kib([rt, "--root", root, "create", "--bundle", bundle, "--pid-file", pidfile, cid])
    pid = int(open(pidfile).read())
    b = peak_rss_kib([rt, "--root", root, "start", cid])
    os.waitpid(pid, 0)
    c = peak_rss_kib([rt, "--root", root, "delete", cid])
    return max(a, b, c)


for _, rt in runtimes:
    from_disk(rt)
results, rss = {}, {}
scenarios = (
    ("run /bin/true", run_true, rss_run),
    ("create+start+wait+delete", lifecycle, rss_lifecycle),
    ("exec /bin/true", exec_true, rss_exec),
)
sleepers = {}
for scenario, fn, rss_fn in scenarios:
    if fn is exec_true:
        for name, rt in runtimes:
            sleepers[name] = start_sleeper(name, rt, os.path.join(work, "root-" + name))
    for name, rt in runtimes:  # warm up caches once each
        fn(name, rt, os.path.join(work, "root-" + name), 999999)
    for i in range(n):
        for name, rt in runtimes:
            results.setdefault((scenario, name), []).append(fn(name, rt, os.path.join(work, "root-" + name), i))
    for i in range(max(5, n // 4)):  # peak RSS in a separate, smaller pass
        for name, rt in runtimes:
            rss.setdefault((scenario, name), []).append(rss_fn(name, rt, os.path.join(work, "root-" + name), i))
    for name, rt in runtimes:
        if name in sleepers:
            stop_sleeper(name, rt, os.path.join(work, "root-" + name), sleepers.pop(name))

print(f"{n} containers per runtime and scenario, interleaved; medians; ratio = runtime / ocirun")
print(f"{'scenario':26} {'runtime':8} {'wall ms':>9} {'cpu ms':>8} {'rss MiB':>8} {'wall x':>7} {'cpu x':>6} {'rss x':>6}")
for scenario, _, _ in scenarios:
    base = None
    for name, _ in runtimes:
        rows = results[(scenario, name)]
        wall = statistics.median(r[0] for r in rows) * 1000
        cpu = statistics.median(r[1] for r in rows) * 1000
        mib = statistics.median(rss[(scenario, name)]) / 1024
        if base is None:
            base = (wall, cpu, mib)
        print(f"{scenario:26} {name:8} {wall:9.2f} {cpu:8.2f} {mib:8.2f} {wall/base[0]:7.2f} {cpu/base[1]:6.2f} {mib/base[2]:6.2f}")
