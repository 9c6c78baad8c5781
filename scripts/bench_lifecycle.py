"""Driver for scripts/bench-lifecycle: interleaved runs, medians, ratios."""
import ctypes, os, resource, statistics, sys, time

work, n, specs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
runtimes = [s.split("=", 1) for s in specs]
bundle = os.path.join(work, "bundle")
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36
libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # the container init is reaped by us
devnull = os.open(os.devnull, os.O_RDWR)


def spawn(argv):
    """Runs argv with stdio on /dev/null; returns (status, rusage of it and its reaped descendants)."""
    pid = os.fork()
    if pid == 0:
        os.dup2(devnull, 0); os.dup2(devnull, 1)
        if not os.environ.get("BENCH_DEBUG"):
            os.dup2(devnull, 2)
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    _, status, ru = os.wait4(pid, 0)
    return status, ru


def check(status, what):
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{what} failed with status {status}")


def run_true(name, rt, root, i):
    cid = f"b{i}"
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    st, ru = spawn([rt, "--root", root, "run", "--bundle", bundle, cid])
    t1, c1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    check(st, f"{name} run")
    cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    return t1 - t0, cpu, ru.ru_maxrss


def lifecycle(name, rt, root, i):
    cid = f"l{i}"
    pidfile = os.path.join(work, f"{name}.pid")
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    st, r1 = spawn([rt, "--root", root, "create", "--bundle", bundle, "--pid-file", pidfile, cid])
    check(st, f"{name} create")
    pid = int(open(pidfile).read())
    st, r2 = spawn([rt, "--root", root, "start", cid])
    check(st, f"{name} start")
    os.waitpid(pid, 0)  # reparented to us (subreaper): no polling
    st, r3 = spawn([rt, "--root", root, "delete", cid])
    check(st, f"{name} delete")
    t1, c1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    return t1 - t0, cpu, max(r1.ru_maxrss, r2.ru_maxrss, r3.ru_maxrss)


results = {}
for scenario, fn in (("run /bin/true", run_true), ("create+start+wait+delete", lifecycle)):
    for name, rt in runtimes:  # warm up caches once each
        fn(name, rt, os.path.join(work, "root-" + name), 999999)
    for i in range(n):
        for name, rt in runtimes:
            results.setdefault((scenario, name), []).append(fn(name, rt, os.path.join(work, "root-" + name), i))

print(f"{n} containers per runtime and scenario, interleaved; medians; ratio = runtime / ocirun")
print(f"{'scenario':26} {'runtime':8} {'wall ms':>9} {'cpu ms':>8} {'rss MiB':>8} {'wall x':>7} {'cpu x':>6} {'rss x':>6}")
for scenario in ("run /bin/true", "create+start+wait+delete"):
    base = None
    for name, _ in runtimes:
        rows = results[(scenario, name)]
        wall = statistics.median(r[0] for r in rows) * 1000
        cpu = statistics.median(r[1] for r in rows) * 1000
        rss = statistics.median(r[2] for r in rows) / 1024
        if base is None:
            base = (wall, cpu, rss)
        print(f"{scenario:26} {name:8} {wall:9.2f} {cpu:8.2f} {rss:8.2f} {wall/base[0]:7.2f} {cpu/base[1]:6.2f} {rss/base[2]:6.2f}")
