//! The runtime spec's lifecycle and runc's command line, as containerd and
//! podman drive them.

use runtime_tests::*;
use serde_json::json;

#[test]
fn run_returns_the_process_exit_status() {
    let c = Ctr::new("exit", &["sh", "-c", "echo out; exit 42"]);
    let o = c.run();
    assert_eq!(o.status.code(), Some(42));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    c.assert_no_leftovers();
}

#[test]
fn create_leaves_container_created_and_start_runs_it() {
    let c = Ctr::new("life", &["sh", "-c", "echo started; sleep 30"]);
    let pidfile = c.dir.join("pid");
    let o = c.create_with(&["--pid-file", pidfile.to_str().unwrap()]);
    assert!(o.status.success(), "{}", c.output());
    let st = c.state();
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], c.id.as_str());
    assert_eq!(st["bundle"], c.bundle().to_str().unwrap());
    assert!(st["ociVersion"].as_str().unwrap().starts_with("1."));
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        pid.to_string()
    );
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    // Nothing of the process runs before start.
    assert_eq!(c.output(), "");
    c.op_ok(&["start", &c.id]);
    c.wait_status("running");
    for _ in 0..100 {
        if c.output().contains("started") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(c.output(), "started\n");
    c.op_ok(&["kill", &c.id, "KILL"]);
    c.wait_status("stopped");
    assert_eq!(c.state()["pid"], 0);
    c.op_ok(&["delete", &c.id]);
    c.assert_no_leftovers();
}

#[test]
fn kill_accepts_names_with_and_without_sig_and_numbers() {
    for sig in ["TERM", "SIGTERM", "15"] {
        let c = Ctr::new(
            "sig",
            &[
                "sh",
                "-c",
                "trap 'exit 3' TERM; while true; do sleep 0.05; done",
            ],
        );
        c.create_ok();
        c.op_ok(&["start", &c.id]);
        c.wait_status("running");
        std::thread::sleep(std::time::Duration::from_millis(100));
        c.op_ok(&["kill", &c.id, sig]);
        c.wait_status("stopped");
        c.op_ok(&["delete", &c.id]);
    }
}

#[test]
fn kill_all_on_a_stopped_container_exits_zero() {
    let c = Ctr::new("killall", &["true"]);
    c.create_ok();
    c.op_ok(&["start", &c.id]);
    c.wait_status("stopped");
    c.op_ok(&["kill", "--all", &c.id, "KILL"]);
    c.op_ok(&["delete", &c.id]);
}

#[test]
fn kill_all_signals_every_process() {
    let c = Ctr::new("killall2", &["sh", "-c", "sleep 100 & sleep 100 & wait"]);
    c.create_ok();
    c.op_ok(&["start", &c.id]);
    c.wait_status("running");
    c.op_ok(&["kill", "--all", &c.id, "KILL"]);
    c.wait_status("stopped");
    c.op_ok(&["delete", &c.id]);
    c.assert_no_leftovers();
}

#[test]
fn delete_force_on_a_missing_container_exits_zero() {
    let c = Ctr::new("nothing", &["true"]);
    let o = c.op(&["delete", "--force", &c.id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn concurrent_deletes_with_force_all_exit_zero() {
    // containerd's shim and a cleanup can race to delete one container: the
    // ones that find it gone, or removed while they waited, succeed too.
    let c = Ctr::new("delrace", &["sleep", "30"]);
    c.create_ok();
    let deletes: Vec<_> = (0..4)
        .map(|_| {
            c.cmd()
                .args(["delete", "--force", &c.id])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for d in deletes {
        let o = d.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    c.assert_no_leftovers();
}

#[test]
fn delete_of_a_running_container_needs_force() {
    let c = Ctr::new("delrun", &["sleep", "30"]);
    c.create_ok();
    c.op_ok(&["start", &c.id]);
    c.wait_status("running");
    let o = c.op(&["delete", &c.id]);
    assert!(
        !o.status.success(),
        "delete of a running container succeeded"
    );
    assert_eq!(c.status(), "running");
    c.op_ok(&["delete", "--force", &c.id]);
    c.assert_no_leftovers();
}

#[test]
fn delete_of_a_created_container_kills_it() {
    let c = Ctr::new("delcreated", &["sleep", "30"]);
    c.create_ok();
    let pid = c.pid();
    c.op_ok(&["delete", &c.id]);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/ns")).exists() || {
            // A zombie may linger until its parent reaps it; it must not run.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
        }
    );
    c.assert_no_leftovers();
}

#[test]
fn start_on_a_running_container_fails() {
    let c = Ctr::new("start2", &["sleep", "30"]);
    c.create_ok();
    c.op_ok(&["start", &c.id]);
    c.wait_status("running");
    let o = c.op(&["start", &c.id]);
    assert!(!o.status.success());
    assert!(!o.stderr.is_empty());
    assert_eq!(c.status(), "running");
}

#[test]
fn annotations_round_trip_into_state() {
    let mut c = Ctr::new("annot", &["sleep", "30"]);
    c.config["annotations"] = json!({"org.example.key": "value", "other": "x y"});
    c.create_ok();
    let st = c.state();
    assert_eq!(st["annotations"]["org.example.key"], "value");
    assert_eq!(st["annotations"]["other"], "x y");
}

#[test]
fn list_shows_containers_in_table_and_json() {
    let c = Ctr::new("list", &["sleep", "30"]);
    c.create_ok();
    let table = c.op_ok(&["list"]);
    assert!(
        table.contains(&c.id) && table.contains("created"),
        "{table}"
    );
    let js: serde_json::Value =
        serde_json::from_str(&c.op_ok(&["list", "--format", "json"])).unwrap();
    let e = js
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == c.id.as_str())
        .expect("listed");
    assert_eq!(e["status"], "created");
}

#[test]
fn state_of_an_unknown_container_fails() {
    let c = Ctr::new("unknown", &["true"]);
    let o = c.op(&["state", &c.id]);
    assert!(!o.status.success());
}

#[test]
fn run_detach_returns_while_the_container_runs() {
    let c = Ctr::new("detach", &["sleep", "30"]);
    c.write_config();
    // The container inherits stdio: a pipe would keep output() waiting for it.
    let err = std::fs::File::create(c.out_file()).unwrap();
    let o = c
        .cmd()
        .args(["run", "--detach", "--bundle"])
        .arg(c.bundle())
        .arg(&c.id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(err)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", c.output());
    assert_eq!(c.status(), "running");
    c.op_ok(&["delete", "--force", &c.id]);
    c.assert_no_leftovers();
}

#[test]
fn global_flags_in_equals_form_and_json_log() {
    let c = Ctr::new("flags", &["true"]);
    let log = c.dir.join("log.json");
    let o = std::process::Command::new(runtime())
        .arg(format!("--root={}", c.root.display()))
        .arg(format!("--log={}", log.display()))
        .arg("--log-format=json")
        .args(["state", "no-such-container"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let last = text.lines().last().expect("an error line in the log");
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["level"], "error");
    assert!(v["msg"].as_str().is_some() && v["time"].as_str().is_some());
}

#[test]
fn config_version_1_3_and_unknown_fields_are_accepted() {
    let mut c = Ctr::new("v13", &["sh", "-c", "echo ok"]);
    c.config["ociVersion"] = json!("1.3.0");
    c.config["somethingNew"] = json!({"a": 1});
    c.config["linux"]["aFutureField"] = json!(true);
    c.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    assert_eq!(c.run_ok(), "ok\n");
}

#[test]
fn no_pivot_runs_with_ms_move() {
    let c = Ctr::new("nopivot", &["sh", "-c", "echo ok"]);
    c.write_config();
    let o = c
        .cmd()
        .args(["run", "--no-pivot", "--bundle"])
        .arg(c.bundle())
        .arg(&c.id)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ok\n");
}

#[test]
fn preserve_fds_passes_extra_fds() {
    let c = Ctr::new(
        "fds",
        &["sh", "-c", "echo through-fd3 >&3; ls /proc/self/fd"],
    );
    c.write_config();
    let f = c.dir.join("fd3.txt");
    let o = run_from_sh(&c, "", "--preserve-fds 1", "3>fd3.txt")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "through-fd3\n");
    // stdio, fd 3, and the fd ls itself opens: nothing of the runtime's.
    let fds: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(
        fds,
        ["0", "1", "2", "3", "4"].map(String::from),
        "fds seen: {fds:?}"
    );
}

/// `run` started by a shell in the bundle dir, so the test can set up fds
/// and environment as a service manager would: `env` before the command,
/// `flags` after `run`, `redirects` at the end.
fn run_from_sh(c: &Ctr, env: &str, flags: &str, redirects: &str) -> std::process::Command {
    let script = format!(
        "cd {dir} && {env} exec {rt} --root {root} run {flags} --bundle {dir} {id} {redirects}",
        dir = c.dir.display(),
        rt = runtime().display(),
        root = c.root.display(),
        id = c.id,
    );
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", &script]).stdin(std::process::Stdio::null());
    cmd
}

#[test]
fn preserve_fds_passes_a_pipe() {
    // The container writes into a pipe whose read end the test holds.
    let c = Ctr::new("fds-pipe", &["sh", "-c", "echo through-the-pipe >&3"]);
    c.write_config();
    let (rx, tx) = nix::unistd::pipe().unwrap();
    let redirect = format!("3>&{}", std::os::fd::AsRawFd::as_raw_fd(&tx));
    let mut child = run_from_sh(&c, "", "--preserve-fds 1", &redirect)
        .spawn()
        .unwrap();
    drop(tx);
    let mut got = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(rx), &mut got).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(got, "through-the-pipe\n");
    c.assert_no_leftovers();
}

#[test]
fn listen_fds_socket_activation_passes_fds_and_env() {
    // systemd-style: LISTEN_FDS=2 for fds 3 and 4, LISTEN_PID naming the
    // runtime; --preserve-fds 1 then passes fd 5 after them.
    let c = Ctr::new(
        "listen-fds",
        &[
            "sh",
            "-c",
            "echo fds=$LISTEN_FDS pid=$LISTEN_PID/$$; cat <&3; cat <&4; cat <&5; ls /proc/self/fd | tr '\\n' ' '",
        ],
    );
    c.write_config();
    for (n, text) in [(3, "three"), (4, "four"), (5, "five")] {
        std::fs::write(c.dir.join(format!("fd{n}")), format!("{text}\n")).unwrap();
    }
    let o = run_from_sh(
        &c,
        "LISTEN_PID=$$ LISTEN_FDS=2",
        "--preserve-fds 1",
        "3<fd3 4<fd4 5<fd5",
    )
    .output()
    .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.starts_with("fds=2 pid=1/1\nthree\nfour\nfive\n"),
        "{out:?}"
    );
    // stdio, the three passed fds, and the one ls opens: nothing else.
    assert!(out.ends_with("0 1 2 3 4 5 6 "), "{out:?}");
    c.assert_no_leftovers();
}

#[test]
fn listen_fds_for_another_process_are_not_passed() {
    // LISTEN_PID names some other process: the fds are not ours to pass.
    let c = Ctr::new(
        "listen-other",
        &[
            "sh",
            "-c",
            "echo fds=${LISTEN_FDS:-none}; ls /proc/self/fd | tr '\\n' ' '",
        ],
    );
    c.write_config();
    let o = run_from_sh(&c, "LISTEN_PID=1 LISTEN_FDS=1", "", "3</dev/null")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(out, "fds=none\n0 1 2 3 ", "{out:?}");
    c.assert_no_leftovers();
}
