//! What a container sees where runc's and crun's containers agree: the
//! read-only cgroup mount podman asks for, /dev/core, /dev/shm.

use runtime_tests::*;
use serde_json::json;

/// `mountpoint fstype options` of the mounts inside the container.
fn mounts_inside(c: &Ctr) -> Vec<(String, String, String)> {
    let out = c.run_ok();
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| (f[1].to_string(), f[2].to_string(), f[3].to_string()))
        })
        .collect()
}

#[test]
fn a_read_only_cgroup_mount_keeps_its_tmpfs_writable_and_controllers_read_only() {
    let mut c = Ctr::new("par-cg", &["cat", "/proc/self/mounts"]);
    c.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
    }));
    let mounts = mounts_inside(&c);
    let at = |p: &str| mounts.iter().find(|m| m.0 == p).cloned();
    let top = at("/sys/fs/cgroup").expect("no /sys/fs/cgroup mount");
    let ro = |o: &str| o.split(',').any(|w| w == "ro");
    if top.1 == "tmpfs" {
        // cgroup v1 or hybrid: runc's layout.
        assert!(!ro(&top.2), "the tmpfs is read-only: {top:?}");
        let ctrls: Vec<_> = mounts
            .iter()
            .filter(|m| m.0.starts_with("/sys/fs/cgroup/") && (m.1 == "cgroup" || m.1 == "cgroup2"))
            .collect();
        assert!(!ctrls.is_empty(), "{mounts:?}");
        for m in ctrls {
            assert!(ro(&m.2), "controller mount writable: {m:?}");
        }
    } else {
        assert!(ro(&top.2), "{top:?}");
    }
}

#[test]
fn dev_core_only_where_the_host_has_proc_kcore() {
    let c = Ctr::new("par-core", &["sh", "-c", "readlink /dev/core || echo none"]);
    let out = c.run_ok();
    if std::path::Path::new("/proc/kcore").exists() {
        assert_eq!(out.trim(), "/proc/kcore");
    } else {
        assert_eq!(out.trim(), "none", "a dangling /dev/core");
    }
}

#[test]
fn dev_shm_only_when_the_config_mounts_it() {
    let mut c = Ctr::new(
        "par-shm",
        &["sh", "-c", "test -e /dev/shm && echo yes || echo no"],
    );
    c.config["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["destination"] != "/dev/shm");
    assert_eq!(c.run_ok().trim(), "no");
    let c = Ctr::new(
        "par-shm2",
        &["sh", "-c", "test -d /dev/shm && echo yes || echo no"],
    );
    assert_eq!(c.run_ok().trim(), "yes");
}
