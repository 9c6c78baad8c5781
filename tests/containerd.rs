//! containerd drives ocirun exactly as it drives runc: `ctr run --runc-binary`
//! (the runc v2 shim calls create/start/state/kill/delete with containerd's
//! global flags). A private containerd on a unix socket in a temp dir.

mod common;

use common::{bin, busybox_image};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Containerd {
    dir: PathBuf,
    child: Child,
    ns: String,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        // The namespace's parent cgroup (`/<ns>/<id>` paths): the runtime
        // removes each container's own, the parent is the test's to remove.
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(h.path().join(&self.ns));
        }
    }
}

impl Containerd {
    fn start() -> Containerd {
        let dir = std::env::temp_dir().join(format!("ocirun-containerd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n[grpc]\n  address = \"{d}/containerd.sock\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  disable_tcp_service = true\n",
            d = dir.display()
        );
        std::fs::write(dir.join("config.toml"), cfg).unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd is installed by scripts/setup");
        let c = Containerd {
            dir,
            child,
            ns: format!("ocirun-test-{}", std::process::id()),
        };
        let t0 = Instant::now();
        while !c.ctr(&["version"]).status.success() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "containerd did not come up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("-a")
            .arg(self.dir.join("containerd.sock"))
            .args(["-n", &self.ns])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ctr_ok(&self, args: &[&str]) -> String {
        let o = self.ctr(args);
        assert!(
            o.status.success(),
            "ctr {args:?}: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            std::fs::read_to_string(self.dir.join("containerd.log"))
                .unwrap_or_default()
                .lines()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
                .join("\n")
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

fn busybox_image_tar(dir: &Path) -> PathBuf {
    let img = busybox_image(dir);
    let tar = dir.join("image.tar");
    assert!(
        Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(&img)
            .arg(".")
            .status()
            .unwrap()
            .success()
    );
    tar
}

#[test]
fn ctr_run_with_ocirun_as_the_runc_binary() {
    let c = Containerd::start();
    let tar = busybox_image_tar(&c.dir);
    c.ctr_ok(&[
        "images",
        "import",
        "--index-name",
        "docker.io/library/bb:latest",
        tar.to_str().unwrap(),
    ]);
    // Foreground: output and exit status come back through the shim.
    let out = c.ctr_ok(&[
        "run",
        "--rm",
        "--runc-binary",
        bin(),
        "docker.io/library/bb:latest",
        "fg",
        "sh",
        "-c",
        "echo via-ocirun; id -u; exit 0",
    ]);
    assert_eq!(out, "via-ocirun\n1000\n");
    let o = c.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        bin(),
        "docker.io/library/bb:latest",
        "fg2",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Detached: task list, kill, delete, and nothing left.
    c.ctr_ok(&[
        "run",
        "-d",
        "--runc-binary",
        bin(),
        "docker.io/library/bb:latest",
        "bg",
        "sleep",
        "1000",
    ]);
    let ls = c.ctr_ok(&["task", "ls"]);
    assert!(ls.contains("bg") && ls.contains("RUNNING"), "{ls}");
    // exec through the shim (`ocirun exec --process FILE --detach ...`).
    let out = c.ctr_ok(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "bg",
        "sh",
        "-c",
        "echo in-exec; id -u",
    ]);
    assert_eq!(out, "in-exec\n1000\n");
    // pause/resume (`ocirun pause|resume`), ps (`ocirun ps --format json`),
    // metrics (the shim reads the cgroups ocirun placed the container in).
    // ctr 1.6 has no `task update`; runtime-tests/tests/cgroups.rs sends
    // `update --resources -` as the shim does.
    c.ctr_ok(&["task", "pause", "bg"]);
    assert!(c.ctr_ok(&["task", "ls"]).contains("PAUSED"));
    c.ctr_ok(&["task", "resume", "bg"]);
    assert!(c.ctr_ok(&["task", "ls"]).contains("RUNNING"));
    let ps = c.ctr_ok(&["task", "ps", "bg"]);
    assert!(ps.lines().count() >= 2, "{ps}");
    let metrics = c.ctr_ok(&["task", "metrics", "bg"]);
    assert!(metrics.contains("memory"), "{metrics}");
    c.ctr_ok(&["task", "kill", "-s", "KILL", "bg"]);
    let t0 = Instant::now();
    while !c.ctr_ok(&["task", "ls"]).contains("STOPPED") {
        assert!(t0.elapsed() < Duration::from_secs(20), "task never stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
    c.ctr_ok(&["task", "delete", "bg"]);
    c.ctr_ok(&["containers", "rm", "bg"]);
    let state = Path::new("/run/containerd/runc").join(&c.ns);
    let left: Vec<_> = std::fs::read_dir(&state)
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "ocirun state left under {}: {left:?}",
        state.display()
    );
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let d = h.path().join(&c.ns).join("bg");
        assert!(!d.exists(), "cgroup {} left", d.display());
    }
}
