#!/usr/bin/env python3
# Drives one pod through containerd's CRI plugin as kubelet does, over the
# CRI gRPC API (runtime.v1), with one runtime handler:
#
#   cri_flow.py --socket SOCK --handler NAME --image IMG --cgroup-parent /P
#               --log-dir DIR [--proto-dir DIR]
#
# With the systemd cgroup driver (containerd's SystemdCgroup = true) the
# parent is a slice (NAME.slice, no dashes): each container is the scope
# cri-containerd-ID.scope in it, and the update is checked in systemd's
# view (systemctl show -p MemoryMax) as well as in memory.max.
#
# RunPodSandbox (host network: no CNI) -> CreateContainer -> StartContainer
# -> ExecSync (stdout, stderr, exit codes, a timeout) -> streaming Exec (the
# URL on containerd's streaming server, over kubelet's websocket protocol
# v4.channel.k8s.io; plain and with a tty) -> UpdateContainerResources ->
# ContainerStats -> StopContainer -> RemoveContainer -> StopPodSandbox ->
# RemovePodSandbox, plus a second container that exits by itself; then
# ListPodSandbox/ListContainers must be empty.
#
# The client is Python's grpcio: its stubs are generated from the pinned
# api.proto into a temp dir on each run (nothing generated is kept), and the
# packages live in a venv under target/ (scripts/setup-cri-client), so the
# ocirun binary and its Cargo build gain no dependency. websocket-client
# speaks the streaming server's websocket protocol (SPDY would need far more).
#
# Prints one JSON object per step: {"step", "want", "got", "detail"}; the
# caller (tests/cri.rs) compares them. Exit status 0 unless the script
# itself broke.
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "..", "..", "shared", "third_party", "cri-api")
RPC_TIMEOUT = 30


def gen_stubs(proto_dir, out):
    from grpc_tools import protoc

    rc = protoc.main(
        [
            "protoc",
            f"-I{proto_dir}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            "api.proto",
        ]
    )
    if rc != 0:
        raise SystemExit(f"protoc failed on {proto_dir}/api.proto: {rc}")
    sys.path.insert(0, out)


def report(step, want, got, detail=""):
    print(
        json.dumps({"step": step, "want": str(want), "got": str(got), "detail": str(detail)}),
        flush=True,
    )


def step(name, want, fn):
    """Runs fn() -> (got, detail) or got; an exception is got "error"."""
    try:
        r = fn()
        got, detail = r if isinstance(r, tuple) else (r, "")
    except Exception as e:  # noqa: BLE001 - every failure is a result here
        got, detail = "error", getattr(e, "details", lambda: None)() or repr(e)
    report(name, want, got, detail)
    return got


def done(_response):
    """For the RPCs whose response is empty: reaching here is success."""
    return "ok"


def wait_for(fn, secs, every=0.2):
    t0 = time.monotonic()
    while True:
        v = fn()
        if v or time.monotonic() - t0 > secs:
            return v
        time.sleep(every)


def ws_exec(url, stdin=b"", secs=20):
    """Runs a kubelet streaming exec over websocket (v4.channel.k8s.io):
    binary messages whose first byte is the channel (0 stdin, 1 stdout,
    2 stderr, 3 the final metav1.Status as JSON). Sends `stdin` (this
    protocol version cannot close it), returns (stdout, stderr, exit code)."""
    import websocket

    ws_url = "ws" + url[len("http") :] if url.startswith("http") else url
    ws = websocket.create_connection(ws_url, subprotocols=["v4.channel.k8s.io"], timeout=secs)
    out, err, status = b"", b"", b""
    try:
        if stdin:
            ws.send_binary(b"\x00" + stdin)
        while True:
            try:
                op, data = ws.recv_data()
            except websocket.WebSocketConnectionClosedException:
                break
            if op == websocket.ABNF.OPCODE_CLOSE:
                break
            if not data:
                continue
            ch, payload = data[0], data[1:]
            if ch == 1:
                out += payload
            elif ch == 2:
                err += payload
            elif ch == 3:
                status += payload
    finally:
        ws.close()
    code = None
    if status:
        st = json.loads(status)
        if st.get("status") == "Success":
            code = 0
        else:
            for c in (st.get("details") or {}).get("causes") or []:
                if c.get("reason") == "ExitCode":
                    code = int(c.get("message"))
            if code is None:
                code = st.get("message", "failure")
    return out.decode(errors="replace"), err.decode(errors="replace"), code


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--handler", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--cgroup-parent", required=True)
    ap.add_argument("--log-dir", required=True)
    ap.add_argument("--proto-dir", default=PROTO_DIR)
    a = ap.parse_args()

    stubs = tempfile.mkdtemp(prefix="cri-stubs-")
    try:
        gen_stubs(a.proto_dir, stubs)
        flow(a)
    finally:
        shutil.rmtree(stubs, ignore_errors=True)


def flow(a):
    import grpc

    import api_pb2 as pb
    import api_pb2_grpc as pbg

    chan = grpc.insecure_channel(f"unix://{a.socket}")
    rt = pbg.RuntimeServiceStub(chan)
    t = RPC_TIMEOUT
    uid = f"ocirun-cri-{a.handler}-{os.getpid()}"
    host_net = pb.NamespaceOption(network=pb.NODE)
    sandbox_cfg = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=f"pod-{a.handler}", uid=uid, namespace="default", attempt=0),
        log_directory=a.log_dir,
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=a.cgroup_parent,
            security_context=pb.LinuxSandboxSecurityContext(namespace_options=host_net),
        ),
    )
    ids = {}

    def run_pod():
        ids["pod"] = rt.RunPodSandbox(
            pb.RunPodSandboxRequest(config=sandbox_cfg, runtime_handler=a.handler), timeout=t
        ).pod_sandbox_id
        return "ok"

    step("RunPodSandbox (host network)", "ok", run_pod)
    step(
        "PodSandboxStatus",
        "SANDBOX_READY",
        lambda: pb.PodSandboxState.Name(rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=ids["pod"]), timeout=t).status.state),
    )

    def create(key, name, command):
        cfg = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name, attempt=0),
            image=pb.ImageSpec(image=a.image),
            command=command,
            log_path=f"{name}.log",
            linux=pb.LinuxContainerConfig(
                security_context=pb.LinuxContainerSecurityContext(namespace_options=host_net)
            ),
        )
        ids[key] = rt.CreateContainer(
            pb.CreateContainerRequest(pod_sandbox_id=ids["pod"], config=cfg, sandbox_config=sandbox_cfg),
            timeout=t,
        ).container_id
        return "ok"

    def state(key):
        s = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=ids[key]), timeout=t).status
        return pb.ContainerState.Name(s.state), s

    # A container that stops gracefully on SIGTERM (StopContainer's signal).
    step(
        "CreateContainer",
        "ok",
        lambda: create("c1", "main", ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]),
    )

    def start(key):
        rt.StartContainer(pb.StartContainerRequest(container_id=ids[key]), timeout=t)
        return state(key)[0]

    step("StartContainer -> status", "CONTAINER_RUNNING", lambda: start("c1"))

    def exec_sync(cmd, timeout=10):
        r = rt.ExecSync(pb.ExecSyncRequest(container_id=ids["c1"], cmd=cmd, timeout=timeout), timeout=t)
        return r.stdout.decode(), r.stderr.decode(), r.exit_code

    def es_ok():
        o, e, c = exec_sync(["sh", "-c", "echo out; echo err >&2; id -u"])
        return f"{o!r} {e!r} {c}"

    step("ExecSync stdout/stderr/exit 0", repr("out\n1000\n") + " " + repr("err\n") + " 0", es_ok)
    step("ExecSync exit code 3", "3", lambda: exec_sync(["sh", "-c", "exit 3"])[2])

    def es_timeout():
        t0 = time.monotonic()
        try:
            o, e, c = exec_sync(["sleep", "30"], timeout=1)
            return f"exit {c}", f"{o!r} {e!r} after {time.monotonic() - t0:.1f}s"
        except grpc.RpcError as e:
            took = time.monotonic() - t0
            ok = "timeout" in (e.details() or "") and took < 15
            return ("timeout" if ok else "error"), f"{e.code()} {e.details()} after {took:.1f}s"

    step("ExecSync timeout 1s (sleep 30)", "timeout", es_timeout)
    step(
        "container still running after the exec timeout",
        "CONTAINER_RUNNING",
        lambda: state("c1")[0],
    )

    def stream(tty):
        # With a tty, stdin too, as `kubectl exec -it` has it: containerd
        # 1.6 loses a tty exec's output now and then without stdin, with
        # runc as with ocirun.
        req = pb.ExecRequest(
            container_id=ids["c1"],
            cmd=["sh", "-c", "tty; read l; echo got-$l"] if tty else ["sh", "-c", "echo s-out; echo s-err >&2; exit 7"],
            tty=tty,
            stdin=tty,
            stdout=True,
            stderr=not tty,
        )
        url = rt.Exec(req, timeout=t).url
        o, e, c = ws_exec(url, stdin=b"hi\n" if tty else b"")
        if tty:
            lines = o.replace("\r\n", "\n").splitlines()
            tty_ok = any(x.startswith("/dev/pts/") for x in lines)
            return f"{tty_ok} {'got-hi' in lines} {c}", f"{url} {o!r}"
        return f"{o!r} {e!r} {c}", url

    step("Exec (streaming, websocket) exit 7", repr("s-out\n") + " " + repr("s-err\n") + " 7", lambda: stream(False))
    step("Exec (streaming, websocket) tty+stdin", "True True 0", lambda: stream(True))

    def update():
        mem = 64 << 20
        rt.UpdateContainerResources(
            pb.UpdateContainerResourcesRequest(
                container_id=ids["c1"],
                linux=pb.LinuxContainerResources(memory_limit_in_bytes=mem, cpu_shares=512),
            ),
            timeout=t,
        )
        s = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=ids["c1"], verbose=True), timeout=t)
        info = json.loads(s.info.get("info", "{}"))
        got = (((info.get("runtimeSpec") or {}).get("linux") or {}).get("resources") or {}).get("memory", {}).get("limit")
        if a.cgroup_parent.endswith(".slice"):
            unit = f"cri-containerd-{ids['c1']}.scope"
            f = f"/sys/fs/cgroup/{a.cgroup_parent}/{unit}/memory.max"
            sd = subprocess.run(
                ["systemctl", "show", "-p", "MemoryMax", "--value", unit], capture_output=True, text=True
            ).stdout.strip()
            if not os.path.exists(f):
                return "no cgroup", f"spec {got}, systemd {sd}"
            with open(f) as fh:
                ok = int(fh.read().strip()) == mem and sd == str(mem)
                return ("ok" if ok else "wrong"), f"spec {got}, systemd MemoryMax {sd}, {f}"
        # What the cgroup holds (cgroup v1 memory hierarchy, or v2).
        for f in (
            f"/sys/fs/cgroup/memory{a.cgroup_parent}/{ids['c1']}/memory.limit_in_bytes",
            f"/sys/fs/cgroup{a.cgroup_parent}/{ids['c1']}/memory.max",
        ):
            if os.path.exists(f):
                with open(f) as fh:
                    return ("ok" if int(fh.read().strip()) == mem else "wrong"), f"spec {got}, {f}"
        return "no cgroup", f"spec {got}"

    step("UpdateContainerResources (memory 64 MiB)", "ok", update)

    def stats():
        s = rt.ContainerStats(pb.ContainerStatsRequest(container_id=ids["c1"]), timeout=t).stats
        return ("ok" if s.memory.working_set_bytes.value > 0 else "no memory"), str(s.memory).replace("\n", " ")

    step("ContainerStats (memory)", "ok", stats)

    # A second container that exits by itself, status 5, while the pod runs.
    step("CreateContainer (exits by itself)", "ok", lambda: create("c2", "oneshot", ["/bin/sh", "-c", "echo bye; exit 5"]))

    def oneshot():
        rt.StartContainer(pb.StartContainerRequest(container_id=ids["c2"]), timeout=t)
        wait_for(lambda: state("c2")[0] == "CONTAINER_EXITED", 20)
        st, s = state("c2")
        return f"{st} {s.exit_code}", s.reason + " " + s.message

    step("StartContainer -> exits, ContainerStatus", "CONTAINER_EXITED 5", oneshot)

    def log():
        with open(os.path.join(a.log_dir, "oneshot.log")) as f:
            text = f.read()
        return ("ok" if " stdout F bye" in text else "missing"), repr(text)

    step("container log (CRI format)", "ok", log)

    def stop():
        t0 = time.monotonic()
        rt.StopContainer(pb.StopContainerRequest(container_id=ids["c1"], timeout=10), timeout=t)
        st, s = state("c1")
        return f"{st} {s.exit_code}", f"{s.reason} after {time.monotonic() - t0:.1f}s"

    step("StopContainer (SIGTERM, trapped)", "CONTAINER_EXITED 0", stop)
    for k in ("c1", "c2"):
        step(
            f"RemoveContainer {k}",
            "ok",
            lambda k=k: done(rt.RemoveContainer(pb.RemoveContainerRequest(container_id=ids[k]), timeout=t)),
        )
    step(
        "StopPodSandbox",
        "ok",
        lambda: done(rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=ids["pod"]), timeout=t)),
    )
    step(
        "RemovePodSandbox",
        "ok",
        lambda: done(rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=ids["pod"]), timeout=t)),
    )

    def listed():
        pods = rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=t).items
        ctrs = rt.ListContainers(pb.ListContainersRequest(), timeout=t).containers
        return f"{len(pods)} pods, {len(ctrs)} containers", " ".join(p.id for p in pods) + " " + " ".join(c.id for c in ctrs)

    left = step("ListPodSandbox/ListContainers", "0 pods, 0 containers", listed)
    if left != "0 pods, 0 containers":
        # Best effort, so the next handler starts clean; the step has failed.
        for c in rt.ListContainers(pb.ListContainersRequest(), timeout=t).containers:
            try:
                rt.StopContainer(pb.StopContainerRequest(container_id=c.id, timeout=0), timeout=t)
                rt.RemoveContainer(pb.RemoveContainerRequest(container_id=c.id), timeout=t)
            except grpc.RpcError:
                pass
        for p in rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=t).items:
            try:
                rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=p.id), timeout=t)
                rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p.id), timeout=t)
            except grpc.RpcError:
                pass


if __name__ == "__main__":
    main()
