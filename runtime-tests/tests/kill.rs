//! kill as clients rely on it: `kill --all` reaches what is left in the
//! cgroup after the init is gone (a container in the host's pid namespace),
//! `ps` still lists it, SIGKILL ends a paused container, and a stopped one
//! answers runc's "container not running".

use runtime_tests::*;
use serde_json::json;

#[test]
fn kill_all_and_ps_reach_processes_left_after_the_init_exits() {
    if runtime_tests::skip_rootless(
        "shares the runtime's pid namespace: only a cgroup of its own tells the container's processes apart",
    ) {
        return;
    }
    // No pid namespace: the init's child outlives it, as with `--pid host`.
    let mut c = Ctr::new(
        "kill-all-orphan",
        &["sh", "-c", "sleep 300 & echo started; exit 0"],
    );
    c.config["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "uts"}, {"type": "ipc"}]);
    c.create_ok();
    c.op_ok(&["start", &c.id]);
    c.wait_status("stopped");
    let left = processes_in_cgroup(&c.id);
    assert_eq!(
        left.len(),
        1,
        "the background sleep should be left: {left:?}"
    );
    let ps = c.op_ok(&["ps", "--format", "json", &c.id]);
    assert!(ps.contains(&left[0].to_string()), "{ps}");
    c.op_ok(&["kill", "--all", &c.id, "KILL"]);
    for _ in 0..200 {
        if processes_in_cgroup(&c.id).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        processes_in_cgroup(&c.id).is_empty(),
        "kill --all left {:?}",
        processes_in_cgroup(&c.id)
    );
    c.op_ok(&["delete", &c.id]);
    c.assert_no_leftovers();
}

#[test]
fn sigkill_ends_a_paused_container() {
    if runtime_tests::skip_rootless(
        "pause needs a freezer cgroup of the container's own, which needs a delegated cgroup v2 subtree",
    ) {
        return;
    }
    let c = Ctr::new("kill-paused", &["sleep", "300"]);
    c.create_ok();
    c.op_ok(&["start", &c.id]);
    c.op_ok(&["pause", &c.id]);
    assert_eq!(c.status(), "paused");
    c.op_ok(&["kill", &c.id, "KILL"]);
    c.wait_status("stopped");
    c.op_ok(&["delete", &c.id]);
    c.assert_no_leftovers();
}

#[test]
fn kill_of_a_stopped_container_says_container_not_running() {
    let c = Ctr::new("kill-stopped", &["true"]);
    c.create_ok();
    c.op_ok(&["start", &c.id]);
    c.wait_status("stopped");
    let o = c.op(&["kill", &c.id, "TERM"]);
    assert!(!o.status.success());
    // containerd maps this phrase to "not found" (StopPodSandbox goes on).
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("container not running"), "{err}");
    // --all of a stopped container with nothing left is not an error.
    c.op_ok(&["kill", "--all", &c.id, "KILL"]);
}
