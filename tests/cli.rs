//! ocirun-specific behaviour through the real binary (root, real kernel):
//! what the conformance suite cannot ask of every runtime.

mod common;

use common::{bin, script, tmp};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A busybox bundle made by the project's own script.
fn bundle(dir: &Path, args: &[&str]) -> PathBuf {
    let b = dir.join("bundle");
    let mut all: Vec<&std::ffi::OsStr> = vec![bin().as_ref(), b.as_os_str()];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    script("make-busybox-bundle", &all);
    b
}

fn edit(b: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = b.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

fn ocirun(root: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

/// `create`, with the container's stdio sent to a file so that nothing waits
/// on a pipe the container keeps open.
fn create(root: &Path, b: &Path, id: &str) -> Output {
    let log = std::fs::File::create(b.join("create.out")).unwrap();
    let o = Command::new(bin())
        .arg("--root")
        .arg(root)
        .args(["create", "--bundle"])
        .arg(b)
        .arg(id)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .output()
        .unwrap();
    Output {
        stderr: std::fs::read(b.join("create.out")).unwrap(),
        ..o
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn spec_writes_a_valid_default_and_refuses_to_overwrite() {
    let t = tmp("spec");
    let o = Command::new(bin())
        .args(["spec", "--bundle"])
        .arg(&t.0)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.0.join("config.json")).unwrap()).unwrap();
    assert_eq!(v["root"]["path"], "rootfs");
    assert_eq!(v["process"]["terminal"], true);
    assert!(v["ociVersion"].as_str().unwrap().starts_with("1."));
    let o = Command::new(bin())
        .args(["spec", "--bundle"])
        .arg(&t.0)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("exists"), "{}", stderr(&o));
}

#[test]
fn the_busybox_bundle_runs_and_greets() {
    let t = tmp("greet");
    let b = bundle(&t.0, &["echo", "hello from ocirun"]);
    let o = Command::new(bin())
        .arg("--root")
        .arg(t.0.join("state"))
        .args(["run", "--bundle"])
        .arg(&b)
        .arg("greet")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello from ocirun\n");
}

/// Without systemd (these machines; the VM of scripts/test-systemd-cgroup
/// has it): one clear line, and no state dir, cgroup or process is left.
#[test]
fn systemd_cgroup_without_systemd_is_a_clear_error() {
    if std::path::Path::new("/run/systemd/system").exists() {
        eprintln!("skipped: systemd runs here (scripts/test-systemd-cgroup tests the driver)");
        return;
    }
    let t = tmp("systemd");
    let b = bundle(&t.0, &["true"]);
    let root = t.0.join("state");
    let run = || {
        Command::new(bin())
            .arg("--systemd-cgroup")
            .arg("--root")
            .arg(&root)
            .args(["run", "--bundle"])
            .arg(&b)
            .arg("sd")
            .output()
            .unwrap()
    };
    let o = run();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("systemd is not running") || err.contains("built without the systemd"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!root.join("sd").exists());
    assert!(
        std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .all(|h| !h.path().join("sd").exists()
                && !h.path().join("system.slice/ocirun-sd.scope").exists()),
        "a cgroup was left"
    );
    // A malformed cgroupsPath is refused before systemd is looked for.
    edit(&b, |v| v["linux"]["cgroupsPath"] = "a:b".into());
    let o = run();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("slice:prefix:name"), "{}", stderr(&o));
    assert!(!root.join("sd").exists());
}

#[test]
fn create_with_a_terminal_needs_a_console_socket() {
    let t = tmp("tty");
    let b = bundle(&t.0, &["true"]);
    edit(&b, |v| v["process"]["terminal"] = true.into());
    let root = t.0.join("state");
    let o = create(&root, &b, "tt");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--console-socket"), "{}", stderr(&o));
    assert!(!root.join("tt").exists());
}

#[test]
fn errors_are_one_line_and_logged_as_json() {
    let t = tmp("log");
    let log = t.0.join("log.json");
    let o = Command::new(bin())
        .args([
            "--root",
            t.0.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "start",
            "nope",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("container nope does not exist"), "{err}");
    let line = std::fs::read_to_string(&log).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["msg"], "container nope does not exist");
}

#[test]
fn foreground_run_forwards_signals() {
    let t = tmp("fwd");
    let b = bundle(
        &t.0,
        &[
            "sh",
            "-c",
            "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.05; done",
        ],
    );
    let mut child = Command::new(bin())
        .arg("--root")
        .arg(t.0.join("state"))
        .args(["run", "--bundle"])
        .arg(&b)
        .arg("fwd")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(st.code(), Some(7));
    assert!(!t.0.join("state/fwd").exists());
}

#[test]
fn crashed_create_is_cleaned_by_delete_force() {
    // A create killed mid-way leaves a state dir; delete --force removes it
    // and its cgroup.
    let t = tmp("crash");
    let b = bundle(&t.0, &["sleep", "30"]);
    let root = t.0.join("state");
    let o = create(&root, &b, "cr");
    assert!(o.status.success(), "{}", stderr(&o));
    // Simulate the crash: forget the pid as if create died before saving it.
    let sp = root.join("cr/state.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&sp).unwrap()).unwrap();
    let pid = v["pid"].as_i64().unwrap();
    v["pid"] = 0.into();
    std::fs::write(&sp, serde_json::to_vec(&v).unwrap()).unwrap();
    let st: serde_json::Value =
        serde_json::from_slice(&ocirun(&root, &["state", "cr"]).stdout).unwrap();
    assert_eq!(st["status"], "stopped");
    let o = ocirun(&root, &["delete", "--force", "cr"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!root.join("cr").exists());
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z"),
        "init still alive: {stat}"
    );
    for h in v["cgroups"].as_array().unwrap() {
        let d = h["dir"].as_str().unwrap();
        assert!(!Path::new(d).exists(), "cgroup {d} left");
    }
}

#[test]
fn a_symlinked_rootfs_path_is_followed() {
    // runc 1.1 refuses this ("not an absolute path, or a symlink"); ocirun
    // resolves the path once and works on the real directory.
    let t = tmp("rootlink");
    let b = bundle(&t.0, &["echo", "ok"]);
    std::fs::rename(b.join("rootfs"), b.join("real-rootfs")).unwrap();
    std::os::unix::fs::symlink("real-rootfs", b.join("rootfs")).unwrap();
    let o = Command::new(bin())
        .arg("--root")
        .arg(t.0.join("state"))
        .args(["run", "--bundle"])
        .arg(&b)
        .arg("rl")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ok\n");
}

/// Started with stderr closed (fd 2 free), ocirun must not let a file it
/// opens take that number: its error message would end up in the file. As
/// std's runtime does, the entry point opens /dev/null on a closed fd.
#[test]
fn closed_standard_fds_are_not_reused_for_files() {
    let d = tmp("closed-fds");
    let log = d.0.join("log.json");
    let o = Command::new("sh")
        .arg("-c")
        .arg("exec 2>&-; exec \"$@\"")
        .arg("sh")
        .arg(bin())
        .arg("--log")
        .arg(&log)
        .arg("--log-format=json")
        .arg("--root")
        .arg(d.0.join("root"))
        .args(["state", "missing"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("container missing does not exist"), "{text}");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("{e}: a line that is not the log's JSON: {line:?}"));
    }
}
