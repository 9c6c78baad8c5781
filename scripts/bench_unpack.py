"""Driver for scripts/bench-unpack."""
import json, os, shutil, statistics, subprocess, sys, time

ocirun, layout, rounds, tmp = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
layout = os.path.abspath(layout)
index = json.load(open(os.path.join(layout, "index.json")))
ref = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
blob = lambda d: os.path.join(layout, "blobs", *d.split(":"))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
layers = [blob(l["digest"]) for l in manifest["layers"]]
compressed = sum(os.path.getsize(p) for p in layers)
uncompressed = sum(int(subprocess.run(f"gzip -dc {p} | wc -c", shell=True, check=True,
                                      capture_output=True, text=True).stdout) for p in layers)


def timed(cmd):
    """Wall seconds and peak RSS (KiB, largest process) of a shell command, via GNU time."""
    rss_file = os.path.join(tmp, "rss")
    t0 = time.perf_counter()
    subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file, "sh", "-c", cmd], check=True,
                   stdout=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    return dt, int(open(rss_file).read().split()[-1])


def fresh(name):
    d = os.path.join(tmp, name)
    shutil.rmtree(d, ignore_errors=True)
    return d


def ocirun_unpack():
    return f"{ocirun} unpack --image {layout}:{ref} {fresh('o')}"


def umoci_unpack():
    return f"umoci unpack --image {layout}:{ref} {fresh('u')}"


def pigz_tar():
    d = fresh("p")
    steps = " && ".join(f"pigz -dc {p} | tar -x --numeric-owner -p -C {d}" for p in layers)
    return f"mkdir -p {d} && {steps}"


def gzip_only():
    return " && ".join(f"gzip -dc {p} > /dev/null" for p in layers)


tools = [("ocirun unpack", ocirun_unpack), ("umoci unpack", umoci_unpack),
         ("pigz -dc | tar -x", pigz_tar), ("gzip -dc (no write)", gzip_only)]
res = {name: [] for name, _ in tools}
for r in range(rounds):
    for name, cmd in tools:
        res[name].append(timed(cmd()))
        for d in ("o", "u", "p"):
            shutil.rmtree(os.path.join(tmp, d), ignore_errors=True)

mb = uncompressed / 1e6
print(f"image: {len(layers)} gzip layers, {compressed/1e6:.0f} MB compressed, {mb:.0f} MB uncompressed; "
      f"{rounds} rounds interleaved into a tmpfs; medians")
print(f"{'tool':22} {'seconds':>8} {'MB/s':>7} {'peak RSS MiB':>13} {'time / ocirun':>14}")
base = statistics.median(t for t, _ in res["ocirun unpack"])
for name, _ in tools:
    t = statistics.median(x for x, _ in res[name])
    rss = statistics.median(m for _, m in res[name]) / 1024
    print(f"{name:22} {t:8.2f} {mb/t:7.0f} {rss:13.1f} {t/base:14.2f}")

# Cross-check on this real image: the same tree as umoci's (type, mode, owner,
# size, link target of every path; umoci's own metadata files aside).
def tree(root):
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            link = os.readlink(p) if os.path.islink(p) else ""
            size = st.st_size if os.path.isfile(p) and not os.path.islink(p) else 0
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, size, link)
    return out


subprocess.run(ocirun_unpack(), shell=True, check=True)
subprocess.run(umoci_unpack(), shell=True, check=True, stdout=subprocess.DEVNULL)
a, b = tree(os.path.join(tmp, "o", "rootfs")), tree(os.path.join(tmp, "u", "rootfs"))
diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
print(f"tree check against umoci: {len(a)} paths, {len(diff)} differences")
for k in diff[:20]:
    print(f"  {k}: ocirun {a.get(k)} umoci {b.get(k)}")
