//! Kubernetes' path: a private containerd whose CRI plugin has ocirun and
//! runc as two runc-v2 runtime handlers (RuntimeClass handlers, chosen per
//! pod by `runtime_handler`), driven over the CRI gRPC API as kubelet
//! drives it: `scripts/cri_flow.py` runs one pod through RunPodSandbox ..
//! RemovePodSandbox with each handler, and this test checks what each step
//! returned and that nothing is left on the host afterwards.
//!
//! The client is Python's grpcio in a venv under target/
//! (`scripts/setup-cri-client`), its stubs generated from the pinned
//! `../shared/third_party/cri-api/api.proto` into a temp dir on each run: a
//! Rust client (tonic, prost, tokio, a protoc) would add a large dependency
//! tree to the workspace's builds for one test, and the ocirun binary must
//! not gain dependencies; Python's packages are wheels, the venv installs in
//! seconds and leaves the machine's Python alone.
//!
//! Everything is private to a temp dir: containerd's root, state, sockets
//! and /opt, each handler's runtime root (`Root`), the CNI directories
//! (empty: the pods use the host network, so no CNI plugin is needed), the
//! pod logs. No registry is reachable, so the sandbox ("pause") image is the
//! project's busybox image with an entrypoint that sleeps until SIGTERM
//! (umoci), and both images reach containerd's `k8s.io` namespace as
//! docker-archives (skopeo, `ctr images import`).

mod common;

use common::busybox_image;
use common::clients::{
    Runtime, Table, cgroup_pids, cgroups_below, clean_up, containers_in, mounts_below,
    processes_naming, run_for, runtimes, text,
};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BUSYBOX: &str = "localhost/ocirun-busybox:1";
const PAUSE: &str = "localhost/ocirun-pause:1";

struct Containerd {
    dir: PathBuf,
    /// The cgroup every pod's `cgroup_parent` is below (`/<cgroup>/<handler>`).
    cgroup: String,
    /// The systemd cgroup driver (`SystemdCgroup = true`): each handler's
    /// pods go in the slice `<cgroup>_<handler>.slice` instead.
    systemd: bool,
    daemon: Child,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.daemon.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let t0 = Instant::now();
        while self.daemon.try_wait().ok().flatten().is_none() {
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = self.daemon.kill();
                let _ = self.daemon.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Shims and containers left by a failed run: killed, their runtime
        // state deleted, then cgroups, mounts and the temp dir removed.
        for rt in runtimes() {
            for id in runtime_state(&self.dir, &rt) {
                let _ = Command::new(&rt.path)
                    .arg("--root")
                    .arg(state_root(&self.dir, &rt))
                    .args(["delete", "--force", &id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if self.systemd {
            for rt in runtimes() {
                let slice = self.parent(&rt);
                clean_up(&self.dir, &slice);
                let _ = Command::new("systemctl").args(["stop", &slice]).status();
            }
        }
        clean_up(&self.dir, &self.cgroup);
    }
}

/// Where the runc v2 shim keeps a handler's runtime state: its `Root`
/// option, then containerd's namespace.
fn state_root(dir: &Path, rt: &Runtime) -> PathBuf {
    dir.join(format!("state-{}", rt.name)).join("k8s.io")
}

fn runtime_state(dir: &Path, rt: &Runtime) -> Vec<String> {
    containers_in(&state_root(dir, rt))
}

impl Containerd {
    /// A pod's `cgroup_parent` for handler `rt`, which is also its cgroup
    /// below the root: `/<cgroup>/<handler>`, or a slice with systemd
    /// (containerd then gives the runtime `SLICE:cri-containerd:ID`).
    fn parent(&self, rt: &Runtime) -> String {
        if self.systemd {
            format!("{}_{}.slice", self.cgroup.replace('-', "_"), rt.name)
        } else {
            format!("/{}/{}", self.cgroup, rt.name)
        }
    }

    fn start(systemd: bool) -> Containerd {
        let dir = std::env::temp_dir().join(format!("ocirun-cri-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["cni/bin", "cni/conf"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let mut handlers = String::new();
        for rt in runtimes() {
            handlers += &format!(
                r#"    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{n}]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{n}.options]
        BinaryName = "{bin}"
        Root = "{d}/state-{n}"
        SystemdCgroup = {systemd}
"#,
                n = rt.name,
                bin = rt.path.display(),
                d = dir.display()
            );
        }
        // restrict_oom_score_adj: the CRI plugin gives a sandbox an
        // oom_score_adj of -998, which needs CAP_SYS_RESOURCE; where
        // containerd runs without it (as in this project's CI sandbox) both
        // runtimes fail RunPodSandbox with EACCES unless the plugin keeps the
        // score at containerd's own.
        let cfg = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  sandbox_image = "{PAUSE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
{handlers}"#,
            d = dir.display()
        );
        std::fs::write(dir.join("config.toml"), cfg).unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd is installed by scripts/setup");
        let c = Containerd {
            dir,
            cgroup: format!("ocirun-cri-{}", std::process::id()),
            systemd,
            daemon,
        };
        let t0 = Instant::now();
        while !c.ctr(&["version"]).status.success() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "containerd did not come up:\n{}",
                c.log_errors()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn ctr(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("ctr");
        cmd.arg("-a")
            .arg(self.dir.join("containerd.sock"))
            .args(["-n", "k8s.io"])
            .args(args);
        run_for(60, &mut cmd)
    }

    fn ctr_ok(&self, args: &[&str]) {
        let o = self.ctr(args);
        assert!(
            o.status.success(),
            "ctr {args:?}: {}\n{}",
            text(&o.stderr),
            self.log_errors()
        );
    }

    /// containerd's error lines (the runtime's stderr reaches them through
    /// the shim), last 20.
    fn log_errors(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let errs: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("level=error") || l.contains("level=fatal"))
            .collect();
        errs[errs.len().saturating_sub(20)..].join("\n")
    }
}

/// `skopeo copy oci:LAYOUT:TAG docker-archive:TAR:NAME`.
fn docker_archive(layout: &Path, tag: &str, name: &str, tar: &Path) {
    let o = run_for(
        120,
        Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker-archive:{}:{name}", tar.display())),
    );
    assert!(o.status.success(), "skopeo: {}", text(&o.stderr));
}

/// The sandbox image: busybox, running as root, whose process waits for
/// SIGTERM (or SIGKILL) as `pause` does.
fn pause_layout(dir: &Path, busybox: &Path) -> PathBuf {
    let layout = dir.join("pause-image");
    let o = run_for(30, Command::new("cp").arg("-a").arg(busybox).arg(&layout));
    assert!(o.status.success(), "cp: {}", text(&o.stderr));
    let o = run_for(
        60,
        Command::new("umoci")
            .arg("config")
            .arg("--image")
            .arg(format!("{}:latest", layout.display()))
            .args([
                "--tag",
                "pause",
                "--config.user",
                "0",
                "--config.workingdir",
                "/",
                "--config.entrypoint",
                "/bin/sh",
                "--config.entrypoint",
                "-c",
                "--config.cmd",
                "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done",
            ]),
    );
    assert!(o.status.success(), "umoci config: {}", text(&o.stderr));
    layout
}

/// What one handler's flow returned: (step, want, got, detail) per line of
/// `scripts/cri_flow.py`'s output.
fn flow(c: &Containerd, python: &Path, rt: &Runtime) -> Vec<(String, String, String, String)> {
    let logs = c.dir.join(format!("logs-{}", rt.name));
    std::fs::create_dir_all(&logs).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cri_flow.py");
    let o = run_for(
        150,
        Command::new(python)
            .arg(script)
            .arg("--socket")
            .arg(c.dir.join("containerd.sock"))
            .args(["--handler", rt.name, "--image", BUSYBOX])
            .arg("--cgroup-parent")
            .arg(c.parent(rt))
            .arg("--log-dir")
            .arg(&logs),
    );
    let mut rows = Vec::new();
    for l in String::from_utf8_lossy(&o.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        let f = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        rows.push((f("step"), f("want"), f("got"), f("detail")));
    }
    if !o.status.success() || !rows.iter().any(|r| r.0.starts_with("ListPodSandbox")) {
        rows.push((
            "cri_flow.py ran to its end".into(),
            "ok".into(),
            format!("{}", o.status),
            text(&o.stderr),
        ));
    }
    rows
}

/// What the host still has of one handler's pod once containerd has
/// removed it: runtime state under its `Root`, cgroups below the pod's
/// parent, processes in them, shims (processes naming the temp dir, other
/// than containerd), mounts under the temp dir. Shims exit on their own
/// after the last delete, so this waits a little for an empty answer.
fn host_leftovers(c: &Containerd, rt: &Runtime) -> Vec<(&'static str, Vec<String>)> {
    let parent = c.parent(rt);
    let parent = parent.trim_start_matches('/');
    let me = c.daemon.id() as i32;
    let look = || {
        vec![
            ("no runtime state under its Root", runtime_state(&c.dir, rt)),
            (
                "no cgroups below the pod's parent",
                cgroups_below(parent)
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            ),
            (
                "no processes: containers or shims",
                cgroup_pids(parent)
                    .iter()
                    .map(|p| format!("pid {p} in the pod's cgroups"))
                    .chain(
                        processes_naming(&c.dir)
                            .into_iter()
                            .filter(|(p, _)| *p != me)
                            .map(|(p, cmd)| format!("pid {p}: {cmd}")),
                    )
                    .collect(),
            ),
            ("no mounts under the temp dir", mounts_below(&c.dir)),
            (
                "no systemd units of its pod",
                if c.systemd {
                    cri_units(parent)
                } else {
                    Vec::new()
                },
            ),
        ]
    };
    let t0 = Instant::now();
    loop {
        let l = look();
        if l.iter().all(|(_, v)| v.is_empty()) || t0.elapsed() > Duration::from_secs(10) {
            return l;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The units systemd still has in `slice` (the pod's scopes).
fn cri_units(slice: &str) -> Vec<String> {
    let o = Command::new("systemctl")
        .args([
            "list-units",
            "--all",
            "--plain",
            "--no-legend",
            "--type=scope",
        ])
        .output()
        .unwrap();
    text(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|u| u.starts_with("cri-containerd-"))
        .filter(|u| {
            let o = Command::new("systemctl")
                .args(["show", "-p", "Slice", "--value", u])
                .output()
                .unwrap();
            text(&o.stdout).trim() == slice
        })
        .map(String::from)
        .collect()
}

#[test]
fn cri_pod_lifecycle_with_ocirun_and_runc_handlers() {
    cri_pod_lifecycle(false);
}

/// The same pod with containerd's `SystemdCgroup = true` (kubelet's
/// `cgroupDriver: systemd`): both runtimes get `--systemd-cgroup` and
/// `SLICE:cri-containerd:ID` paths. Needs systemd as PID 1 on cgroup v2:
/// `OCIRUN_CRI_SYSTEMD=1` runs it (scripts/test-systemd-cgroup, in a VM).
#[test]
fn cri_pod_lifecycle_with_the_systemd_cgroup_driver() {
    if std::env::var("OCIRUN_CRI_SYSTEMD").is_ok_and(|v| v == "1") {
        cri_pod_lifecycle(true);
    } else {
        eprintln!("skipped: OCIRUN_CRI_SYSTEMD=1 runs it (on a systemd host)");
    }
}

fn cri_pod_lifecycle(systemd: bool) {
    let proto =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/third_party/cri-api/api.proto");
    if !proto.is_file() {
        eprintln!("skipped: no CRI API definition at {}", proto.display());
        return;
    }
    let python = {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup-cri-client");
        let o = run_for(600, &mut Command::new(&script));
        assert!(
            o.status.success(),
            "{}: {}",
            script.display(),
            text(&o.stderr)
        );
        PathBuf::from(text(&o.stdout))
    };
    let t0 = Instant::now();
    let c = Containerd::start(systemd);
    let img = busybox_image(&c.dir);
    let pause = pause_layout(&c.dir, &img);
    docker_archive(&img, "latest", BUSYBOX, &c.dir.join("busybox.tar"));
    docker_archive(&pause, "pause", PAUSE, &c.dir.join("pause.tar"));
    for tar in ["busybox.tar", "pause.tar"] {
        c.ctr_ok(&["images", "import", c.dir.join(tar).to_str().unwrap()]);
    }

    let mut table = Table::default();
    for rt in runtimes() {
        for (step, want, got, detail) in flow(&c, &python, &rt) {
            table.record(&step, &rt, &want, &got, &detail);
        }
        for (what, left) in host_leftovers(&c, &rt) {
            let got = if left.is_empty() { "none" } else { "left" };
            table.record(what, &rt, "none", got, &left.join("; "));
        }
    }
    eprintln!("cri: both handlers in {:.1}s", t0.elapsed().as_secs_f64());
    let errs = c.log_errors();
    if !errs.is_empty() {
        eprintln!("containerd's error lines:\n{errs}");
    }
    table.check(if systemd {
        "CRI (containerd 1.6, SystemdCgroup) pod lifecycle, per runtime handler"
    } else {
        "CRI (containerd 1.6) pod lifecycle, per runtime handler"
    });
}
