//! The device cgroup (`linux.resources.devices`): what a container may open
//! and mknod, on cgroup v1 (devices.allow/deny) and v2 (an eBPF program).
//! The expectations are runc 1.1's: the spec's rules first, its default
//! allowed devices appended after them, a deny-all baseline.

use runtime_tests::*;
use serde_json::{Value, json};

const DENY_ALL: &str = r#"{"allow": false, "access": "rwm"}"#;

fn rules(list: &[&str]) -> Value {
    Value::Array(
        list.iter()
            .map(|r| serde_json::from_str(r).unwrap())
            .collect(),
    )
}

fn with_caps(c: &mut Ctr, extra: &str) {
    let mut caps: Vec<&str> = CAPS.to_vec();
    caps.push(extra);
    for set in ["bounding", "effective", "permitted"] {
        c.config["process"]["capabilities"][set] = json!(caps);
    }
}

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A deny of `w` on c 1:3 stops writes to /dev/null but not reads. The
/// spec lists /dev/null in linux.devices: that is what takes runc's
/// appended default `c 1:3 rwm` away (see `runc_defaults_win_...`).
/// runc itself cannot run this container: its init opens /dev/null for
/// reading and writing (`reOpenDevNull`) in every container and fails;
/// `deny_write_to_dev_zero_keeps_reads` is the same check for any runtime.
#[test]
fn deny_write_to_dev_null_keeps_reads() {
    if runtime_tests::skip_rootless(
        "device cgroup rules need privilege (not applied rootless, as runc)",
    ) {
        return;
    }
    if runtime_name() != "ocirun" {
        eprintln!(
            "skipped for {}: runc's init opens /dev/null O_RDWR",
            runtime_name()
        );
        return;
    }
    deny_write_keeps_reads("null", 3);
}

#[test]
fn deny_write_to_dev_zero_keeps_reads() {
    if runtime_tests::skip_rootless(
        "device cgroup rules need privilege (not applied rootless, as runc)",
    ) {
        return;
    }
    deny_write_keeps_reads("zero", 5);
}

fn deny_write_keeps_reads(name: &str, minor: u32) {
    let script = format!(
        "head -c 3 /dev/{name} > /tmp/r && echo read-ok; (echo x > /dev/{name}) 2>&1 && echo write-ok || echo write-denied"
    );
    let mut c = Ctr::new(name, &["sh", "-c", &script]);
    c.config["linux"]["devices"] = json!([{"path": format!("/dev/{name}"), "type": "c", "major": 1, "minor": minor, "fileMode": 0o666}]);
    c.config["linux"]["resources"] = json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": minor, "access": "rwm"},
        {"allow": false, "type": "c", "major": 1, "minor": minor, "access": "w"},
    ]});
    let out = c.run_ok();
    assert!(out.starts_with("read-ok\n"), "read failed: {out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.ends_with("write-denied\n"), "{out}");
}

/// runc appends its defaults after the spec's rules, so a deny of a default
/// device (here /dev/null, not listed in linux.devices) is allowed again.
#[test]
fn runc_defaults_win_over_earlier_denies() {
    let mut c = Ctr::new(
        "nulldef",
        &["sh", "-c", "echo x > /dev/null && echo write-ok"],
    );
    c.config["linux"]["resources"] = json!({"devices": rules(&[
        DENY_ALL,
        r#"{"allow": false, "type": "c", "major": 1, "minor": 3, "access": "rwm"}"#,
    ])});
    assert_eq!(c.run_ok(), "write-ok\n");
}

/// In allow-all mode a deny of c 1:1 stops its mknod with EPERM (runc's
/// `c *:* m` default only takes exactly that wildcard away, not the deny).
#[test]
fn mknod_of_a_denied_device_fails_with_eperm() {
    if runtime_tests::skip_rootless(
        "device cgroup rules need privilege (not applied rootless, as runc)",
    ) {
        return;
    }
    let mut c = Ctr::new(
        "mknod",
        &[
            "sh",
            "-c",
            "mknod /dev/zero2 c 1 5 && echo zero-ok; mknod /dev/mem2 c 1 1 2>&1 && echo mem-ok || echo mem-denied",
        ],
    );
    with_caps(&mut c, "CAP_MKNOD");
    c.config["linux"]["resources"] = json!({"devices": rules(&[
        r#"{"allow": true, "access": "rwm"}"#,
        r#"{"allow": false, "type": "c", "major": 1, "minor": 1, "access": "rwm"}"#,
    ])});
    let out = c.run_ok();
    assert!(out.starts_with("zero-ok\n"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.ends_with("mem-denied\n"), "{out}");
}

/// With the usual deny-all, runc's defaults allow mknod of anything, but
/// opening a node of a device that is not allowed fails with EPERM; an
/// allowed default device made the same way works.
#[test]
fn deny_all_allows_mknod_but_not_open() {
    if runtime_tests::skip_rootless(
        "device cgroup rules need privilege (not applied rootless, as runc)",
    ) {
        return;
    }
    let mut c = Ctr::new(
        "mknodopen",
        &[
            "sh",
            "-c",
            "mknod /dev/zero2 c 1 5 && head -c 3 /dev/zero2 | wc -c; mknod /dev/mem2 c 1 1 && echo mknod-ok; (head -c 1 /dev/mem2) 2>&1 || echo open-denied",
        ],
    );
    with_caps(&mut c, "CAP_MKNOD");
    c.config["linux"]["resources"] = json!({"devices": rules(&[DENY_ALL])});
    let out = c.run_ok();
    assert!(out.starts_with("3\nmknod-ok\n"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.ends_with("open-denied\n"), "{out}");
}

const OPEN_KMSG: &str = "(: > /dev/kmsg) 2>&1 && echo opened || echo denied";

/// A device in linux.devices is not allowed by itself (deny-all baseline
/// even without any rule); with an allow rule it can be opened.
#[test]
fn listed_device_needs_an_allow_rule() {
    if runtime_tests::skip_rootless(
        "device cgroup rules need privilege (not applied rootless, as runc)",
    ) {
        return;
    }
    let kmsg =
        json!([{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o600}]);

    let mut c = Ctr::new("kmsgno", &["sh", "-c", OPEN_KMSG]);
    c.config["linux"]["devices"] = kmsg.clone();
    let out = c.run_ok();
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.ends_with("denied\n"), "{out}");

    let mut c = Ctr::new("kmsgyes", &["sh", "-c", OPEN_KMSG]);
    c.config["linux"]["devices"] = kmsg;
    c.config["linux"]["resources"] = json!({"devices": rules(&[
        DENY_ALL,
        r#"{"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"}"#,
    ])});
    assert_eq!(c.run_ok(), "opened\n");
}

fn assert_create_fails_cleanly(c: &Ctr, words: &[&str]) {
    let before = mount_count();
    let o = c.create();
    let err = stderr_of(&o) + &c.output();
    assert!(
        !o.status.success(),
        "create succeeded with a bad device rule"
    );
    assert!(!err.trim().is_empty(), "no error message");
    if runtime_name() == "ocirun" {
        assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
        for w in words {
            assert!(err.contains(w), "error {err:?} does not name {w:?}");
        }
    }
    c.assert_no_leftovers();
    assert_eq!(mount_count(), before, "mounts changed on the host");
}

#[test]
fn bad_rule_type_fails_create_and_leaves_nothing() {
    let mut c = Ctr::new("badtype", &["true"]);
    c.config["linux"]["resources"] =
        json!({"devices": [{"allow": true, "type": "x", "major": 1, "minor": 3, "access": "rwm"}]});
    assert_create_fails_cleanly(&c, &["config.json", "`x`"]);
}

/// ocirun refuses access letters other than r, w, m; runc 1.1 drops them
/// silently (its Permissions set ignores unknown letters: "rq" acts as "r").
#[test]
fn bad_rule_access_fails_create_and_leaves_nothing() {
    if runtime_name() != "ocirun" {
        eprintln!(
            "skipped for {}: runc 1.1 ignores unknown access letters",
            runtime_name()
        );
        return;
    }
    let mut c = Ctr::new("badaccess", &["true"]);
    c.config["linux"]["resources"] = json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rq"}
    ]});
    assert_create_fails_cleanly(&c, &["device rule 1", "c 1:3 rq", "\"rq\""]);
}
