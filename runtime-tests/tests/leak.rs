//! Repeated lifecycles leave nothing behind: no state dirs, host mounts,
//! cgroups or processes.

use runtime_tests::*;

#[test]
fn fifty_runs_and_twenty_create_delete_cycles_leak_nothing() {
    let c = Ctr::new("leak", &["true"]);
    c.write_config();
    let mounts = mount_count();
    for i in 0..50 {
        let id = format!("{}-run{i}", c.id);
        let o = c
            .cmd()
            .args(["run", "--bundle"])
            .arg(c.bundle())
            .arg(&id)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "run {i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let mut c2 = Ctr::new("leak2", &["sleep", "30"]);
    c2.root = c.root.clone();
    c2.write_config();
    for i in 0..20 {
        let id = format!("{}-cd{i}", c.id);
        let o = c2
            .cmd()
            .args(["create", "--bundle"])
            .arg(c2.bundle())
            .arg(&id)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(o.success(), "create {i}");
        let o = c2.cmd().args(["delete", "--force", &id]).output().unwrap();
        assert!(
            o.status.success(),
            "delete {i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let left: Vec<_> = std::fs::read_dir(&c.root)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "state dirs left: {left:?}");
    assert_eq!(mount_count(), mounts, "host mounts changed");
    // Every container of a loop used its bundle's cgroupsPath in turn.
    for id in [&c.id, &c2.id] {
        for d in cgroup_dirs(&format!("/{id}")) {
            assert!(!d.exists(), "cgroup left: {}", d.display());
        }
    }
    for id in [&c.id, &c2.id] {
        let procs = processes_in_cgroup(id);
        assert!(procs.is_empty(), "processes left: {procs:?}");
    }
}
