//! runtime.md's lifecycle and config.md's process, to the letter: the
//! seccomp filter as the last step (only the identity syscalls and execve
//! after it), `start` failing when the process cannot be exec'd, hooks that
//! fail at each point, an optional process, no mount namespace, repeated
//! environment keys, and capabilities that cannot be granted.

use runtime_tests::*;
use serde_json::json;

/// What busybox's `sh -c 'echo ...'` needs once it runs, and nothing of the
/// runtime's own work.
const BUSYBOX: &[&str] = &[
    "arch_prctl",
    "brk",
    "exit_group",
    "getpid",
    "getppid",
    "getrandom",
    "getuid",
    "mprotect",
    "newfstatat",
    "prctl",
    "prlimit64",
    "readlink",
    "rseq",
    "rt_sigaction",
    "set_robust_list",
    "set_tid_address",
    "uname",
    "write",
    "open",
    "openat",
    "close",
    "dup2",
    "fcntl",
];

fn allow_only(extra: &[&str]) -> serde_json::Value {
    let names: Vec<&str> = BUSYBOX.iter().chain(extra).copied().collect();
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
    })
}

#[test]
fn with_no_new_privileges_only_execve_follows_the_filter() {
    let mut c = Ctr::new("sl-nnp", &["sh", "-c", "echo ran"]);
    c.config["linux"]["seccomp"] = allow_only(&["execve"]);
    c.create_ok();
    c.op_ok(&["start", &c.id]);
    c.wait_status("stopped");
    assert!(c.output().contains("ran"), "{}", c.output());
}

#[test]
fn without_no_new_privileges_only_the_identity_syscalls_and_execve_follow() {
    if runtime_name() != "ocirun" {
        eprintln!("skip: the documented post-filter list is ocirun's (docs/security.md)");
        return;
    }
    let mut c = Ctr::new("sl-privs", &["sh", "-c", "echo ran as $(id -u)"]);
    c.config["process"]["noNewPrivileges"] = json!(false);
    c.config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [1001]});
    // docs/security.md: setgroups, setresgid, setresuid, capget, capset,
    // prctl (ambient), execve; then busybox's `id` needs getgid/geteuid.
    c.config["linux"]["seccomp"] = allow_only(&[
        "execve",
        "setgroups",
        "setresgid",
        "setresuid",
        "capget",
        "capset",
        "getgid",
        "geteuid",
        "getegid",
        "getgroups",
        "clone",
        "clone3",
        "wait4",
        "pipe2",
        "read",
        "vfork",
        "exit",
        "rt_sigprocmask",
        "rt_sigreturn",
    ]);
    c.create_ok();
    c.op_ok(&["start", &c.id]);
    c.wait_status("stopped");
    assert!(c.output().contains("ran as 1000"), "{}", c.output());
}

#[test]
fn start_fails_when_the_process_cannot_be_executed() {
    if runtime_name() != "ocirun" {
        eprintln!("skip: runc 1.1's start returns before the exec");
        return;
    }
    // Executable, but its interpreter does not exist: only execve finds out.
    let c = Ctr::new("sl-noexec", &["/bin/script"]);
    std::fs::write(c.rootfs().join("bin/script"), "#!/no/such/shell\n").unwrap();
    std::fs::set_permissions(
        c.rootfs().join("bin/script"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    c.create_ok();
    let o = c.op(&["start", &c.id]);
    assert!(
        !o.status.success(),
        "start of a process that cannot exec succeeded"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no such file or directory"), "{err}");
    c.wait_status("stopped");
    c.op_ok(&["delete", &c.id]);
    c.assert_no_leftovers();
}

#[test]
fn a_failing_start_container_hook_fails_start_and_the_process_never_runs() {
    if runtime_name() != "ocirun" {
        eprintln!("skip: runc 1.1's start returns before the startContainer hooks");
        return;
    }
    let mut c = Ctr::new("sl-schook", &["sh", "-c", "echo process-ran"]);
    c.config["hooks"] = json!({"startContainer": [{"path": "/bin/false"}]});
    c.create_ok();
    let o = c.op(&["start", &c.id]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("startContainer hook 0"), "{err}");
    c.wait_status("stopped");
    assert!(!c.output().contains("process-ran"), "{}", c.output());
    c.op_ok(&["delete", &c.id]);
    c.assert_no_leftovers();
}

#[test]
fn start_container_hooks_run_with_the_process_identity() {
    let mut c = Ctr::new("sl-schook-id", &["true"]);
    c.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    c.config["hooks"] = json!({"startContainer": [{
        "path": "/bin/sh", "args": ["sh", "-c", "id -u > /tmp/hook-uid"]
    }]});
    std::fs::set_permissions(
        c.rootfs().join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    c.create_ok();
    c.op_ok(&["start", &c.id]);
    c.wait_status("stopped");
    let uid = std::fs::read_to_string(c.rootfs().join("tmp/hook-uid")).unwrap();
    assert_eq!(uid.trim(), "1000");
}

#[test]
fn failing_poststart_and_poststop_hooks_warn_and_the_rest_still_run() {
    let mut c = Ctr::new("sl-posthooks", &["sleep", "10"]);
    let marks = c.dir.join("marks");
    let mark = |what: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {what} >> {}", marks.display())]});
    c.config["hooks"] = json!({
        "poststart": [{"path": "/bin/false"}, mark("poststart-2")],
        "poststop": [{"path": "/bin/false"}, mark("poststop-2")]
    });
    c.create_ok();
    let o = c.op(&["start", &c.id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(c.status(), "running");
    c.op_ok(&["kill", &c.id, "KILL"]);
    c.wait_status("stopped");
    let o = c.op(&["delete", &c.id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = std::fs::read_to_string(&marks).unwrap();
    assert_eq!(m, "poststart-2\npoststop-2\n");
    c.assert_no_leftovers();
}

#[test]
fn a_failing_create_runtime_hook_fails_create_runs_poststop_and_leaves_nothing() {
    let mut c = Ctr::new("sl-crhook", &["true"]);
    let marks = c.dir.join("marks");
    c.config["hooks"] = json!({
        "createRuntime": [{"path": "/bin/false"}],
        "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", format!("echo poststop >> {}", marks.display())]}]
    });
    let o = c.create();
    assert!(!o.status.success());
    assert!(
        c.output().contains("createRuntime hook 0"),
        "{}",
        c.output()
    );
    assert_eq!(std::fs::read_to_string(&marks).unwrap(), "poststop\n");
    c.assert_no_leftovers();
}

#[test]
fn process_is_optional_at_create_and_start_then_fails() {
    if runtime_name() != "ocirun" {
        eprintln!("skip: runc 1.1 requires process at create");
        return;
    }
    let mut c = Ctr::new("sl-noproc", &["true"]);
    c.config.as_object_mut().unwrap().remove("process");
    c.create_ok();
    assert_eq!(c.status(), "created");
    let o = c.op(&["start", &c.id]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no process"), "{err}");
    c.wait_status("stopped");
    c.op_ok(&["delete", &c.id]);
    c.assert_no_leftovers();
}

#[test]
fn without_a_mount_namespace_the_container_uses_the_runtime_s_and_leaves_no_mount() {
    if runtime_tests::skip_rootless(
        "replaces linux.namespaces without a user namespace: a rootless container needs its own",
    ) {
        return;
    }
    let mut c = Ctr::new("sl-nomntns", &["sleep", "10"]);
    c.config["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "uts"}]);
    let before = mount_count();
    c.create_ok();
    let pid = c.pid().to_string();
    assert_eq!(ns_inode(&pid, "mnt"), ns_inode("self", "mnt"));
    let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap();
    assert_eq!(root, c.rootfs().canonicalize().unwrap());
    c.op_ok(&["delete", "--force", &c.id]);
    assert_eq!(
        mount_count(),
        before,
        "mounts left in the runtime's namespace"
    );
    c.assert_no_leftovers();
}

#[test]
fn a_repeated_env_key_takes_its_last_value_in_config_and_exec() {
    let mut c = Ctr::new("sl-env", &["sleep", "10"]);
    c.config["process"]["env"] = json!(["PATH=/bin:/usr/bin", "A=first", "B=b", "A=last"]);
    c.create_ok();
    c.op_ok(&["start", &c.id]);
    let out = c.op_ok(&["exec", &c.id, "sh", "-c", "echo $A $B; env | grep -c ^A="]);
    assert_eq!(out, "last b\n1\n");
    let out = c.op_ok(&[
        "exec", "--env", "B=x", "--env", "B=y", &c.id, "sh", "-c", "echo $B",
    ]);
    assert_eq!(out, "y\n");
}

#[test]
fn the_notify_listener_gets_its_fd_during_create_with_no_new_privileges() {
    let mut c = Ctr::new("sl-notify-create", &["true"]);
    let sock = c.dir.join("listener.sock");
    let listener = runtime_tests::listen(&sock);
    c.config["process"]["noNewPrivileges"] = json!(true);
    c.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    c.create_ok();
    // Before `start`: an agent that waits for the fd first must not deadlock.
    listener.set_nonblocking(true).unwrap();
    let (conn, _) = listener.accept().expect("no listener fd during create");
    conn.set_nonblocking(false).unwrap();
    let (data, _fd) = runtime_tests::sys::recv_fd(&conn).unwrap();
    let state: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(state["state"]["status"], "creating");
    c.op_ok(&["start", &c.id]);
}

#[test]
fn exec_with_a_notify_profile_hands_its_listener_fd_over() {
    if runtime_name() != "ocirun" {
        eprintln!("skip: runc 1.1 drops the exec's listener fd too");
        return;
    }
    let mut c = Ctr::new("sl-notify-exec", &["sleep", "10"]);
    let sock = c.dir.join("listener.sock");
    let listener = runtime_tests::listen(&sock);
    c.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "syscalls": [{"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    });
    c.create_ok();
    let (conn, _) = listener.accept().unwrap();
    let _init_fd = runtime_tests::sys::recv_fd(&conn).unwrap();
    c.op_ok(&["start", &c.id]);
    let exec = c
        .cmd()
        .args(["exec", &c.id, "sh", "-c", "mkdir /tmp/x; echo rc=$?"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (conn, _) = listener.accept().unwrap();
    let (data, fd) = runtime_tests::sys::recv_fd(&conn).unwrap();
    let state: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(state["state"]["id"], c.id.as_str());
    assert!(state["pid"].as_i64().unwrap() > 0, "{state}");
    // The agent goes away: the notified mkdir fails (ENOSYS) instead of
    // hanging, and the exec'd shell goes on.
    drop(fd);
    let out = exec.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("rc=1"),
        "{out:?}"
    );
}

#[test]
fn unknown_and_ungrantable_capabilities_are_warnings() {
    if runtime_name() != "ocirun" {
        eprintln!("skip: runc 1.1 refuses both");
        return;
    }
    let mut c = Ctr::new("sl-caps", &["sh", "-c", "grep CapEff /proc/self/status"]);
    let caps = json!(["CAP_KILL", "CAP_NO_SUCH_THING", "CAP_SYS_RESOURCE"]);
    for set in ["bounding", "effective", "permitted"] {
        c.config["process"]["capabilities"][set] = caps.clone();
    }
    c.create_ok();
    let out = c.output();
    assert!(
        out.contains("warning") && out.contains("CAP_NO_SUCH_THING"),
        "{out}"
    );
    c.op_ok(&["start", &c.id]);
    c.wait_status("stopped");
    // CAP_KILL (5) is there; CAP_SYS_RESOURCE only where the host has it.
    let out = c.output();
    let eff = out.lines().find(|l| l.starts_with("CapEff")).unwrap();
    let mask = u64::from_str_radix(eff.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_ne!(mask & (1 << 5), 0, "{eff}");
}

#[test]
fn exec_ignore_paused_runs_once_the_container_resumes() {
    if runtime_tests::skip_rootless(
        "pause needs a freezer cgroup of the container's own, which needs a delegated cgroup v2 subtree",
    ) {
        return;
    }
    let c = Ctr::new("sl-ignpaused", &["sleep", "10"]);
    c.create_ok();
    c.op_ok(&["start", &c.id]);
    c.op_ok(&["pause", &c.id]);
    let o = c.op(&["exec", &c.id, "true"]);
    assert!(
        !o.status.success(),
        "exec into a paused container succeeded"
    );
    let exec = c
        .cmd()
        .args(["exec", "--ignore-paused", &c.id, "echo", "after-resume"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    c.op_ok(&["resume", &c.id]);
    let out = exec.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "after-resume\n");
}

#[test]
fn exec_cgroup_runs_in_an_existing_sub_cgroup() {
    if runtime_tests::skip_rootless(
        "needs a cgroup of its own: without privilege only a delegated cgroup v2 subtree is writable (rootless.rs tests that in the VM)",
    ) {
        return;
    }
    let c = Ctr::new("sl-subcg", &["sleep", "10"]);
    c.create_ok();
    c.op_ok(&["start", &c.id]);
    let dirs: Vec<_> = cgroup_dirs(&format!("/{}", c.id))
        .into_iter()
        .filter(|d| d.is_dir())
        .collect();
    for d in &dirs {
        std::fs::create_dir(d.join("sub")).unwrap();
        // A v1 cpuset cgroup starts with no cpus or mems: give it its parent's.
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(v) = std::fs::read_to_string(d.join(f)) {
                std::fs::write(d.join("sub").join(f), v.trim()).unwrap();
            }
        }
    }
    let out = c.op_ok(&["exec", "--cgroup", "sub", &c.id, "cat", "/proc/self/cgroup"]);
    let want = format!("/{}/sub", c.id);
    assert!(
        out.lines().all(|l| l.ends_with(&want) || l.ends_with(":/")),
        "{out}"
    );
    let o = c.op(&["exec", "--cgroup", "nosuch", &c.id, "true"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nosuch"));
    let o = c.op(&["exec", "--cgroup", "../escape", &c.id, "true"]);
    assert!(!o.status.success());
    c.op_ok(&["kill", &c.id, "KILL"]);
    c.wait_status("stopped");
    for d in &dirs {
        let _ = std::fs::remove_dir(d.join("sub"));
    }
}
