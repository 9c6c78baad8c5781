//! exec: a new process in a running container, in all its namespaces and
//! its cgroup, with its own user, env, cwd; exit status and --detach.

use runtime_tests::*;
use serde_json::json;

fn running(name: &str) -> Ctr {
    let mut c = Ctr::new(name, &["sleep", "60"]);
    c.config["hostname"] = json!("exec-box");
    c.create_ok();
    c.op_ok(&["start", &c.id]);
    c.wait_status("running");
    c
}

#[test]
fn exec_joins_the_container_namespaces_and_cgroup() {
    let c = running("exec-ns");
    let init = c.pid().to_string();
    let o = c.op(&["exec", &c.id, "sh", "-c", "hostname; echo $$; for n in net mnt pid; do readlink /proc/self/ns/$n; done; cat /proc/self/cgroup"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "exec-box");
    assert_ne!(lines[1], "1", "exec'd process is not the init");
    assert!(
        lines[1].parse::<u32>().unwrap() < 1000,
        "pid {} is not in the container's pid namespace",
        lines[1]
    );
    assert_eq!(lines[2], ns_inode(&init, "net"));
    assert_eq!(lines[3], ns_inode(&init, "mnt"));
    assert_eq!(lines[4], ns_inode(&init, "pid"));
    let init_cg = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    assert_eq!(
        lines[5..].join("\n") + "\n",
        init_cg,
        "not in the init's cgroup"
    );
}

#[test]
fn exec_user_env_cwd_and_exit_status() {
    let c = running("exec-user");
    let o = c.op(&[
        "exec",
        "--user",
        "1000:1000",
        "--env",
        "FOO=bar baz",
        "--cwd",
        "/tmp",
        &c.id,
        "sh",
        "-c",
        "id -u; id -g; echo $FOO; pwd; exit 7",
    ]);
    assert_eq!(
        o.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "1000\n1000\nbar baz\n/tmp\n"
    );
}

#[test]
fn exec_process_file_as_containerd_sends_it() {
    let c = running("exec-file");
    let f = c.dir.join("process.json");
    std::fs::write(&f, serde_json::to_vec(&json!({
        "terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["sh", "-c", "echo from-process-file $X"],
        "env": ["PATH=/bin:/usr/bin", "X=1"], "cwd": "/"
    })).unwrap()).unwrap();
    let out = c.op_ok(&["exec", "--process", f.to_str().unwrap(), &c.id]);
    assert_eq!(out, "from-process-file 1\n");
}

#[test]
fn exec_detach_writes_the_pid_file() {
    let c = running("exec-detach");
    let pf = c.dir.join("exec.pid");
    let log = std::fs::File::create(c.dir.join("exec.out")).unwrap();
    let st = c
        .cmd()
        .args([
            "exec",
            "--detach",
            "--pid-file",
            pf.to_str().unwrap(),
            &c.id,
            "sleep",
            "30",
        ])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap();
    assert!(st.success());
    let pid: i32 = std::fs::read_to_string(&pf)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The process may still be inside execve when exec returns.
    let mut cmdline = String::new();
    for _ in 0..100 {
        cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.starts_with("sleep") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(cmdline.starts_with("sleep\u{0}30"), "{cmdline:?}");
}

#[test]
fn exec_in_a_stopped_container_fails() {
    let c = Ctr::new("exec-stopped", &["true"]);
    c.create_ok();
    c.op_ok(&["start", &c.id]);
    c.wait_status("stopped");
    let o = c.op(&["exec", &c.id, "true"]);
    assert!(!o.status.success());
    assert!(!o.stderr.is_empty());
}

#[test]
fn exec_tty_sends_the_pty_master_to_the_console_socket() {
    let c = running("exec-tty");
    let sock = c.dir.join("exec-console.sock");
    let listener = runtime_tests::listen(&sock);
    let mut child = c
        .cmd()
        .args([
            "exec",
            "--tty",
            "--console-socket",
            sock.to_str().unwrap(),
            &c.id,
            "sh",
            "-c",
            "tty; echo done",
        ])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut conn = None;
    for _ in 0..500 {
        if let Ok((s, _)) = listener.accept() {
            conn = Some(s);
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            // runc 1.1 refuses --console-socket without --detach for exec.
            assert!(
                runtime_name() != "ocirun",
                "exec ended without a console: {st}"
            );
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let conn = conn.expect("the runtime never connected to the console socket");
    conn.set_nonblocking(false).unwrap();
    let (_name, master) = runtime_tests::sys::recv_fd(&conn).unwrap();
    // Held open until the process exits: closing the master hangs up the
    // pty, and a process still on it would die of SIGHUP.
    let keep = master.try_clone().unwrap();
    let out = runtime_tests::sys::read_until(master, "done");
    assert!(child.wait().unwrap().success());
    drop(keep);
    assert!(out.contains("/dev/pts/"), "{out:?}");
}

#[test]
fn exec_with_an_apparmor_profile_the_host_cannot_apply_fails() {
    let aa = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.starts_with('Y'));
    if aa {
        return; // nothing to refuse on a host with AppArmor
    }
    let c = running("exec-aa");
    let o = c.op(&["exec", "--apparmor", "ocirun-test-profile", &c.id, "true"]);
    assert!(!o.status.success(), "the profile was ignored");
    assert!(!o.stderr.is_empty());
    assert_eq!(c.status(), "running");
}

#[test]
fn exec_into_a_no_pivot_container_sees_the_container_root() {
    // With --no-pivot the init's root is a chroot over a moved mount; exec
    // must land in the init's root (ocirun enters /proc/<init>/root).
    let c = Ctr::new("exec-nopivot", &["sleep", "100"]);
    std::fs::write(c.rootfs().join("marker"), "inside\n").unwrap();
    let o = c.create_with(&["--no-pivot"]);
    assert!(o.status.success(), "{}", c.output());
    c.op_ok(&["start", &c.id]);
    let out = c.op_ok(&["exec", &c.id, "cat", "/marker"]);
    assert_eq!(out, "inside\n");
    let out = c.op_ok(&[
        "exec",
        "--cwd",
        "/bin",
        &c.id,
        "sh",
        "-c",
        "pwd; ls /marker",
    ]);
    assert_eq!(out, "/bin\n/marker\n");
    c.op_ok(&["delete", "--force", &c.id]);
    c.assert_no_leftovers();
}
