//! Hooks: all six kinds, at their points, in order, with the state on stdin.

use runtime_tests::*;
use serde_json::json;

fn hook(script: &str) -> serde_json::Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
}

#[test]
fn all_hooks_run_in_order_with_the_state_on_stdin() {
    let mut c = Ctr::new("hooks", &["sh", "-c", "echo process >> /tmp/order"]);
    let d = c.dir.clone();
    let order = d.join("order");
    let rec = |kind: &str| {
        format!(
            "cat > {}/{kind}.json; echo {kind} >> {}",
            d.display(),
            order.display()
        )
    };
    c.config["hooks"] = json!({
        "prestart": [hook(&rec("prestart"))],
        "createRuntime": [hook(&rec("createRuntime"))],
        "createContainer": [hook(&rec("createContainer"))],
        // In the container, after pivot_root: only the container's files.
        "startContainer": [hook("cat > /tmp/startContainer.json; echo startContainer >> /tmp/order")],
        "poststart": [hook(&rec("poststart"))],
        "poststop": [hook(&rec("poststop"))]
    });
    c.config["annotations"] = json!({"k": "v"});
    c.create_ok();
    let host_order = std::fs::read_to_string(&order).unwrap();
    assert_eq!(host_order, "prestart\ncreateRuntime\ncreateContainer\n");
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("createRuntime.json")).unwrap())
            .unwrap();
    assert_eq!(st["id"], c.id.as_str());
    assert_eq!(st["status"], "creating");
    assert_eq!(st["pid"].as_i64().unwrap(), c.pid() as i64);
    assert_eq!(st["bundle"], c.bundle().to_str().unwrap());
    assert_eq!(st["annotations"]["k"], "v");
    c.op_ok(&["start", &c.id]);
    c.wait_status("stopped");
    // The startContainer hook ran in the container before the process.
    assert_eq!(
        std::fs::read_to_string(c.rootfs().join("tmp/order")).unwrap(),
        "startContainer\nprocess\n"
    );
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(c.rootfs().join("tmp/startContainer.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(st["id"], c.id.as_str());
    assert!(
        std::fs::read_to_string(&order)
            .unwrap()
            .ends_with("poststart\n")
    );
    c.op_ok(&["delete", &c.id]);
    assert!(
        std::fs::read_to_string(&order)
            .unwrap()
            .ends_with("poststart\npoststop\n")
    );
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("poststop.json")).unwrap()).unwrap();
    assert_eq!(st["id"], c.id.as_str());
    c.assert_no_leftovers();
}

#[test]
fn a_failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    let mut c = Ctr::new("hookfail", &["true"]);
    c.config["hooks"] = json!({"createRuntime": [hook("exit 7")]});
    let before = mount_count();
    let o = c.create();
    assert!(!o.status.success(), "create succeeded with a failing hook");
    assert!(!c.output().trim().is_empty());
    c.assert_no_leftovers();
    assert_eq!(mount_count(), before);
}

#[test]
fn a_hook_that_times_out_fails_create() {
    let mut c = Ctr::new("hooktimeout", &["true"]);
    let mut h = hook("sleep 30");
    h["timeout"] = json!(1);
    c.config["hooks"] = json!({"createContainer": [h]});
    let t0 = std::time::Instant::now();
    let o = c.create();
    assert!(
        !o.status.success(),
        "create succeeded with a hook that hung"
    );
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(20),
        "the timeout was not enforced"
    );
    c.assert_no_leftovers();
}

#[test]
fn failing_poststart_and_poststop_hooks_do_not_abort() {
    let mut c = Ctr::new("hookpost", &["true"]);
    c.config["hooks"] = json!({"poststart": [hook("exit 1")], "poststop": [hook("exit 1")]});
    c.create_ok();
    c.op_ok(&["start", &c.id]);
    c.wait_status("stopped");
    c.op_ok(&["delete", &c.id]);
    c.assert_no_leftovers();
}
