//! linux.seccomp: actions, errno values, argument conditions, unknown names,
//! with and without no_new_privileges, and the notify listener.

use runtime_tests::*;
use serde_json::json;

fn with_seccomp(name: &str, script: &str, profile: serde_json::Value) -> Ctr {
    let mut c = Ctr::new(name, &["sh", "-c", script]);
    c.config["linux"]["seccomp"] = profile;
    c
}

#[test]
fn errno_action_with_errno_ret_and_unknown_names_skipped() {
    let c = with_seccomp(
        "sc-errno",
        "mkdir /tmp/x 2>&1; echo rc=$?; touch /tmp/ok && echo touched",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat", "not_a_syscall_anywhere"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
        ]}),
    );
    let out = c.run_ok();
    assert!(
        out.contains("Permission denied") && out.contains("rc=1") && out.contains("touched"),
        "{out}"
    );
}

#[test]
fn masked_eq_condition_blocks_only_setuid_chmod() {
    let c = with_seccomp(
        "sc-masked",
        "touch /tmp/f; chmod 755 /tmp/f && echo plain-ok; chmod 4755 /tmp/f 2>&1 || echo setuid-denied",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 2048, "valueTwo": 2048, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 2, "value": 2048, "valueTwo": 2048, "op": "SCMP_CMP_MASKED_EQ"}]}
        ]}),
    );
    let out = c.run_ok();
    assert!(
        out.contains("plain-ok")
            && out.contains("setuid-denied")
            && out.contains("Operation not permitted"),
        "{out}"
    );
}

#[test]
fn kill_process_action() {
    let c = with_seccomp(
        "sc-kill",
        "uname; echo survived",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_KILL_PROCESS"}]}),
    );
    let o = c.run();
    // The shell dies of SIGSYS (31) before printing anything.
    assert_eq!(
        o.status.code(),
        Some(128 + 31),
        "{:?} {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains("survived"));
}

#[test]
fn filter_loads_without_no_new_privileges() {
    let mut c = with_seccomp(
        "sc-nnp",
        "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["acct"], "action": "SCMP_ACT_ERRNO"}]}),
    );
    c.config["process"]["noNewPrivileges"] = json!(false);
    let out = c.run_ok();
    assert!(
        out.contains("Seccomp:\t2") && out.contains("NoNewPrivs:\t0"),
        "{out}"
    );
}

#[test]
fn rules_without_errno_ret_return_eperm_and_log_flag_is_accepted() {
    let c = with_seccomp(
        "sc-eperm",
        "mkdir /tmp/y 2>&1; echo rc=$?",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}),
    );
    let out = c.run_ok();
    assert!(
        out.contains("Operation not permitted") && out.contains("rc=1"),
        "{out}"
    );
}

#[test]
fn bad_profiles_fail_at_create_and_leave_nothing() {
    for (name, profile) in [
        ("action", json!({"defaultAction": "SCMP_ACT_EXPLODE"})),
        (
            "operator",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}]}),
        ),
        (
            "arch",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}),
        ),
        (
            "errnoret",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}),
        ),
    ] {
        let c = with_seccomp(&format!("sc-bad-{name}"), "true", profile);
        let before = mount_count();
        let o = c.create();
        assert!(!o.status.success(), "{name}: accepted");
        assert!(!c.output().trim().is_empty(), "{name}: no error message");
        c.assert_no_leftovers();
        assert_eq!(mount_count(), before);
    }
}

#[test]
fn notify_fd_and_state_go_to_the_listener() {
    let mut c = with_seccomp("sc-notify", "mkdir /tmp/z 2>&1; echo rc=$?", json!({}));
    let sock = c.dir.join("listener.sock");
    let listener = runtime_tests::listen(&sock);
    c.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock, "listenerMetadata": "meta-data",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    let o = c.create();
    assert!(o.status.success(), "{}", c.output());
    c.op_ok(&["start", &c.id]);
    let (conn, _) = listener.accept().unwrap();
    let (data, fd) = runtime_tests::sys::recv_fd(&conn).unwrap();
    let state: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(state["fds"], json!(["seccompFd"]));
    assert_eq!(state["metadata"], "meta-data");
    assert_eq!(state["state"]["id"], c.id.as_str());
    assert!(state["pid"].as_i64().unwrap() > 0);
    // Closing the listener makes the notified syscalls fail with ENOSYS.
    drop(fd);
    c.wait_status("stopped");
    let out = c.output();
    assert!(out.contains("rc=1"), "{out}");
}
