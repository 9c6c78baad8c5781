//! linux.resources, pause/resume, update, events, ps and kill --all, observed
//! from outside (the cgroup files) and from inside (what the limits do).
//! Works on cgroup v1/hybrid (the dev machines) and pure v2 (the VM).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use runtime_tests::*;
use serde_json::{Value, json};

fn v2() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The container's file of a controller: v1 `/sys/fs/cgroup/<ctrl>/<id>/<v1>`
/// or v2 `/sys/fs/cgroup/<id>/<v2>`.
fn cg_file(c: &Ctr, ctrl: &str, v1: &str, v2name: &str) -> PathBuf {
    if v2() {
        PathBuf::from(format!("/sys/fs/cgroup/{}/{v2name}", c.cgroup_rel()))
    } else {
        PathBuf::from(format!("/sys/fs/cgroup/{ctrl}/{}/{v1}", c.cgroup_rel()))
    }
}

fn read(p: &PathBuf) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

fn started(c: &Ctr) {
    c.create_ok();
    c.op_ok(&["start", &c.id]);
}

/// CPU time the container's cgroup has used, in microseconds.
fn cpu_usage_us(c: &Ctr) -> u64 {
    if v2() {
        let s = read(&cg_file(c, "", "", "cpu.stat"));
        s.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .unwrap()
            .parse()
            .unwrap()
    } else {
        read(&cg_file(c, "cpuacct", "cpuacct.usage", ""))
            .parse::<u64>()
            .unwrap()
            / 1000
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn limits_are_written_where_the_kernel_enforces_them() {
    if runtime_tests::skip_rootless(
        "needs a cgroup of its own: without privilege only a delegated cgroup v2 subtree is writable (rootless.rs tests that in the VM)",
    ) {
        return;
    }
    let mut c = Ctr::new("cg-limits", &["sleep", "100"]);
    c.config["linux"]["resources"] = json!({
        "memory": {"limit": 67108864, "reservation": 33554432},
        "cpu": {"shares": 512, "quota": 25000, "period": 100000},
        "pids": {"limit": 64}
    });
    started(&c);
    if v2() {
        assert_eq!(read(&cg_file(&c, "", "", "memory.max")), "67108864");
        assert_eq!(read(&cg_file(&c, "", "", "memory.low")), "33554432");
        assert_eq!(read(&cg_file(&c, "", "", "cpu.max")), "25000 100000");
        // shares 512 -> weight 1 + (510 * 9999) / 262142 = 20 (runc's formula)
        assert_eq!(read(&cg_file(&c, "", "", "cpu.weight")), "20");
        assert_eq!(read(&cg_file(&c, "", "", "pids.max")), "64");
    } else {
        assert_eq!(
            read(&cg_file(&c, "memory", "memory.limit_in_bytes", "")),
            "67108864"
        );
        assert_eq!(
            read(&cg_file(&c, "memory", "memory.soft_limit_in_bytes", "")),
            "33554432"
        );
        assert_eq!(read(&cg_file(&c, "cpu", "cpu.cfs_quota_us", "")), "25000");
        assert_eq!(read(&cg_file(&c, "cpu", "cpu.cfs_period_us", "")), "100000");
        assert_eq!(read(&cg_file(&c, "cpu", "cpu.shares", "")), "512");
        assert_eq!(read(&cg_file(&c, "pids", "pids.max", "")), "64");
    }
    c.op_ok(&["delete", "--force", &c.id]);
    c.assert_no_leftovers();
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    if runtime_tests::skip_rootless(
        "needs a cgroup of its own: without privilege only a delegated cgroup v2 subtree is writable (rootless.rs tests that in the VM)",
    ) {
        return;
    }
    let mut c = Ctr::new("cg-pids", &["sleep", "100"]);
    c.config["linux"]["resources"] = json!({"pids": {"limit": 8}});
    started(&c);
    // The bomb runs through exec (in the container's cgroup): the shell dies
    // when a fork fails, the sleeps it managed to start stay.
    let bomb = "i=0; while [ $i -lt 30 ]; do sleep 100 >/dev/null 2>&1 & i=$((i+1)); done";
    let o = c.op(&["exec", &c.id, "sh", "-c", bomb]);
    assert!(!o.status.success(), "30 forks under pids.max 8 all worked");
    // Left: the init and the sleeps; the shell that hit the limit is gone
    // (as may be a helper of the exec that counted while it lived).
    let current: usize = read(&cg_file(&c, "pids", "pids.current", "pids.current"))
        .parse()
        .unwrap();
    assert!((6..=7).contains(&current), "pids.current {current}");
    let ps: Vec<i32> = serde_json::from_str(&c.op_ok(&["ps", "--format", "json", &c.id])).unwrap();
    assert_eq!(ps.len(), current, "{ps:?}");
    c.op_ok(&["delete", "--force", &c.id]);
    c.assert_no_leftovers();
}

/// `events` in the background, its lines collected by a thread.
struct Events {
    child: Child,
    lines: std::sync::mpsc::Receiver<Value>,
}

fn events(c: &Ctr, interval: &str) -> Events {
    let mut child = c
        .cmd()
        .args(["events", "--interval", interval, &c.id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&l) {
                let _ = tx.send(v);
            }
        }
    });
    Events { child, lines }
}

impl Events {
    fn next_of(&self, kind: &str, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(v) if v["type"] == kind => return Some(v),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_process_over_its_memory_limit_is_oom_killed_and_events_reports_it() {
    if runtime_tests::skip_rootless(
        "needs a cgroup of its own: without privilege only a delegated cgroup v2 subtree is writable (rootless.rs tests that in the VM)",
    ) {
        return;
    }
    // `tail /dev/zero` buffers an endless line: it grows until killed.
    let mut c = Ctr::new(
        "cg-oom",
        &["sh", "-c", "sleep 1; tail /dev/zero; sleep 100"],
    );
    c.config["linux"]["resources"] = json!({"memory": {"limit": 33554432, "swap": 33554432}});
    started(&c);
    let ev = events(&c, "60s");
    let oom = ev.next_of("oom", Duration::from_secs(30));
    assert_eq!(
        oom.as_ref().map(|v| v["id"].clone()),
        Some(json!(c.id)),
        "no oom event: {oom:?}"
    );
    // The limit held: the cgroup's peak never went past it.
    let stats: Value = serde_json::from_str(&c.op_ok(&["events", "--stats", &c.id])).unwrap();
    assert_eq!(stats["type"], "stats");
    let limit = stats["data"]["memory"]["usage"]["limit"].as_u64().unwrap();
    assert_eq!(limit, 33554432, "{stats}");
    c.op_ok(&["delete", "--force", &c.id]);
    c.assert_no_leftovers();
}

#[test]
fn events_stats_has_runc_shape() {
    if runtime_tests::skip_rootless(
        "needs a cgroup of its own: without privilege only a delegated cgroup v2 subtree is writable (rootless.rs tests that in the VM)",
    ) {
        return;
    }
    let mut c = Ctr::new("cg-stats", &["sh", "-c", "sleep 100 & sleep 100; true"]);
    c.config["linux"]["resources"] = json!({"pids": {"limit": 20}});
    started(&c);
    wait_for("two sleeps", || {
        c.op_ok(&["ps", "-f", "json", &c.id]).matches(',').count() >= 2
    });
    let v: Value = serde_json::from_str(&c.op_ok(&["events", "--stats", &c.id])).unwrap();
    assert_eq!(v["type"], "stats");
    assert_eq!(v["id"], json!(c.id));
    let d = &v["data"];
    assert_eq!(d["pids"]["current"], 3, "{v}");
    assert_eq!(d["pids"]["limit"], 20, "{v}");
    assert!(d["cpu"]["usage"]["total"].as_u64().unwrap() > 0, "{v}");
    assert!(d["memory"]["usage"]["usage"].as_u64().unwrap() > 0, "{v}");
    // Without --stats: a stats line every interval, until the container ends.
    let ev = events(&c, "200ms");
    assert!(ev.next_of("stats", Duration::from_secs(5)).is_some());
    assert!(ev.next_of("stats", Duration::from_secs(5)).is_some());
    c.op_ok(&["kill", "--all", &c.id, "KILL"]);
    c.wait_status("stopped");
    c.op_ok(&["delete", &c.id]);
    c.assert_no_leftovers();
}

#[test]
fn pause_freezes_and_resume_thaws_a_busy_loop() {
    if runtime_tests::skip_rootless(
        "pause needs a freezer cgroup of the container's own, which needs a delegated cgroup v2 subtree",
    ) {
        return;
    }
    let c = Ctr::new("cg-pause", &["sh", "-c", "while :; do :; done"]);
    started(&c);
    wait_for("the loop to burn cpu", || cpu_usage_us(&c) > 20_000);
    c.op_ok(&["pause", &c.id]);
    assert_eq!(c.status(), "paused");
    let a = cpu_usage_us(&c);
    std::thread::sleep(Duration::from_millis(500));
    let b = cpu_usage_us(&c);
    assert!(b - a < 5_000, "cpu time grew by {} us while paused", b - a);
    // Paused is not stopped: delete without --force is refused, exec too.
    assert!(!c.op(&["delete", &c.id]).status.success());
    c.op_ok(&["resume", &c.id]);
    assert_eq!(c.status(), "running");
    let a = cpu_usage_us(&c);
    std::thread::sleep(Duration::from_millis(500));
    assert!(cpu_usage_us(&c) - a > 50_000, "the loop did not resume");
    assert!(
        !c.op(&["resume", &c.id]).status.success(),
        "resume of a running container"
    );
    // A paused container can be deleted with --force: nothing is left.
    c.op_ok(&["pause", &c.id]);
    c.op_ok(&["delete", "--force", &c.id]);
    c.assert_no_leftovers();
}

#[test]
fn update_changes_the_limits_of_a_running_container() {
    if runtime_tests::skip_rootless(
        "needs a cgroup of its own: without privilege only a delegated cgroup v2 subtree is writable (rootless.rs tests that in the VM)",
    ) {
        return;
    }
    let mut c = Ctr::new("cg-update", &["sleep", "100"]);
    c.config["linux"]["resources"] = json!({"memory": {"limit": 67108864}, "pids": {"limit": 30}});
    started(&c);
    let mem = cg_file(&c, "memory", "memory.limit_in_bytes", "memory.max");
    let pids = cg_file(&c, "pids", "pids.max", "pids.max");
    let quota = cg_file(&c, "cpu", "cpu.cfs_quota_us", "cpu.max");
    // Flags.
    c.op_ok(&["update", "--memory", "128m", "--pids-limit", "40", &c.id]);
    assert_eq!(read(&mem), "134217728");
    assert_eq!(read(&pids), "40");
    // --resources - (JSON on stdin), as containerd sends it.
    let mut child = c
        .cmd()
        .args(["update", "--resources", "-", &c.id])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"pids": {"limit": 50}, "cpu": {"quota": 30000, "period": 100000}}"#)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(read(&pids), "50");
    assert!(read(&quota).starts_with("30000"), "{}", read(&quota));
    // --resources=FILE, as podman sends it.
    let f = c.dir.join("res.json");
    fs::write(&f, r#"{"pids": {"limit": 60}}"#).unwrap();
    c.op_ok(&["update", &format!("--resources={}", f.display()), &c.id]);
    assert_eq!(read(&pids), "60");
    assert_eq!(read(&mem), "134217728", "a field not asked for changed");
    assert_eq!(c.status(), "running");
    c.op_ok(&["delete", "--force", &c.id]);
    c.assert_no_leftovers();
}

#[test]
fn a_failed_update_leaves_the_running_container_untouched() {
    if runtime_tests::skip_rootless(
        "needs a cgroup of its own: without privilege only a delegated cgroup v2 subtree is writable (rootless.rs tests that in the VM)",
    ) {
        return;
    }
    let mut c = Ctr::new("cg-update-bad", &["sleep", "100"]);
    c.config["linux"]["resources"] = json!({"memory": {"limit": 67108864}, "pids": {"limit": 30}});
    started(&c);
    let mem = cg_file(&c, "memory", "memory.limit_in_bytes", "memory.max");
    let pids = cg_file(&c, "pids", "pids.max", "pids.max");
    for args in [
        vec!["--cpuset-cpus", "0-"],
        vec!["--memory", "-5"],
        // runc 1.1 takes any negative pids limit as "unlimited"; -1 is
        // that value, anything below is refused here (the issue's rule).
        vec!["--pids-limit", "-7"],
        // Valid syntax the kernel refuses (no such CPU), after a memory
        // change in the same call: the memory change is undone.
        vec![
            "--memory",
            "96m",
            "--pids-limit",
            "45",
            "--cpuset-cpus",
            "4000",
        ],
    ] {
        let mut all = vec!["update"];
        all.extend(&args);
        all.push(&c.id);
        let o = c.op(&all);
        assert!(!o.status.success(), "update {args:?} succeeded");
        assert!(!o.stderr.is_empty(), "no error for {args:?}");
        assert_eq!(read(&mem), "67108864", "memory changed by {args:?}");
        assert_eq!(read(&pids), "30", "pids changed by {args:?}");
        assert_eq!(c.status(), "running");
    }
    // memory.checkBeforeUpdate: a limit below the current usage is refused
    // (without it, v1 answers EBUSY and v2 would OOM-kill the container).
    let f = c.dir.join("below-usage.json");
    fs::write(
        &f,
        r#"{"memory": {"limit": 4096, "checkBeforeUpdate": true}}"#,
    )
    .unwrap();
    let o = c.op(&["update", "--resources", f.to_str().unwrap(), &c.id]);
    assert!(!o.status.success(), "a limit below usage was taken");
    assert_eq!(read(&mem), "67108864");
    assert_eq!(c.status(), "running");
    c.op_ok(&["delete", "--force", &c.id]);
    c.assert_no_leftovers();
}

#[test]
fn kill_all_signals_every_process_in_the_container() {
    let c = Ctr::new(
        "cg-killall",
        &[
            "sh",
            "-c",
            "trap '' TERM; sleep 100 & sleep 100 & sleep 100; true",
        ],
    );
    started(&c);
    wait_for("three sleeps", || {
        c.op_ok(&["ps", "-f", "json", &c.id]).matches(',').count() >= 3
    });
    let before: Vec<i32> = serde_json::from_str(&c.op_ok(&["ps", "-f", "json", &c.id])).unwrap();
    c.op_ok(&["kill", "--all", &c.id, "KILL"]);
    c.wait_status("stopped");
    for p in before {
        wait_for("every process to be gone", || {
            !std::path::Path::new(&format!("/proc/{p}")).exists()
                || fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| s.contains(") Z "))
        });
    }
    // containerd sends kill --all to containers that already stopped.
    c.op_ok(&["kill", "--all", &c.id, "KILL"]);
    c.op_ok(&["delete", &c.id]);
    c.assert_no_leftovers();
}

#[test]
fn ps_table_lists_the_container_processes() {
    let c = Ctr::new("cg-ps", &["sleep", "100"]);
    started(&c);
    let out = c.op_ok(&["ps", &c.id]);
    let mut lines = out.lines();
    assert!(lines.next().unwrap().contains("PID"), "{out}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert!(rows[0].contains("sleep 100"), "{out}");
    assert!(rows[0].contains(&c.pid().to_string()), "{out}");
    c.op_ok(&["delete", "--force", &c.id]);
    c.assert_no_leftovers();
}

#[test]
fn invalid_resources_fail_create_and_leave_nothing() {
    let mut unified_v1 = json!({"unified": {"pids.max": "10"}});
    if v2() {
        unified_v1 = json!({"unified": {"memory.bogus_file": "1"}});
    }
    for res in [
        json!({"memory": {"limit": -5}}),
        json!({"cpu": {"cpus": "0-"}}),
        json!({"pids": {"limit": -3}}), // runc 1.1 accepts: "unlimited"
        json!({"unified": {"../../etc/passwd": "1"}}),
        unified_v1,
    ] {
        let mut c = Ctr::new("cg-bad", &["true"]);
        c.config["linux"]["resources"] = res.clone();
        let o = c.create();
        let text = fs::read_to_string(c.out_file()).unwrap_or_default();
        assert!(!o.status.success(), "create with {res} succeeded");
        assert!(!text.trim().is_empty(), "no error for {res}");
        c.assert_no_leftovers();
        assert!(
            !std::path::Path::new(&format!("/sys/fs/cgroup/pids/{}", c.cgroup_rel())).exists()
                && !std::path::Path::new(&format!("/sys/fs/cgroup/{}", c.cgroup_rel())).exists(),
            "cgroup left for {res}"
        );
    }
}

#[test]
fn cgroups_path_forms() {
    if systemd() {
        eprintln!("cgroupfs paths: the systemd driver's forms are in tests/systemd.rs");
        return;
    }
    if runtime_tests::skip_rootless(
        "needs a cgroup of its own: without privilege only a delegated cgroup v2 subtree is writable (rootless.rs tests that in the VM)",
    ) {
        return;
    }
    // Relative: under the runtime's own cgroup; absolute: as given.
    let mut c = Ctr::new("cg-rel", &["sleep", "100"]);
    let rel = format!("rt-rel/{}", c.id);
    c.config["linux"]["cgroupsPath"] = json!(rel);
    started(&c);
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    let line = own
        .lines()
        .find(|l| {
            if v2() {
                l.starts_with("0::")
            } else {
                l.contains(":pids:")
            }
        })
        .unwrap();
    let base = line.rsplit(':').next().unwrap();
    let mount = if v2() {
        "/sys/fs/cgroup"
    } else {
        "/sys/fs/cgroup/pids"
    };
    let dir = PathBuf::from(format!("{mount}{}/{rel}", base.trim_end_matches('/')));
    let procs = read(&dir.join("cgroup.procs"));
    assert!(
        procs.lines().any(|p| p == c.pid().to_string()),
        "{}",
        dir.display()
    );
    c.op_ok(&["delete", "--force", &c.id]);
    assert!(!dir.exists(), "{} left", dir.display());
    // The parent the runtime made is left (as runc leaves it): remove it in
    // every hierarchy, checking the container's own dir is gone from each.
    for line in own.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        let mount = match ctrls {
            "" if v2() => "/sys/fs/cgroup".to_string(),
            "" => "/sys/fs/cgroup/unified".to_string(),
            c => format!("/sys/fs/cgroup/{}", c.trim_start_matches("name=")),
        };
        let parent = PathBuf::from(format!("{mount}{}/rt-rel", path.trim_end_matches('/')));
        assert!(
            !parent.join(&c.id).exists(),
            "{} left",
            parent.join(&c.id).display()
        );
        let _ = fs::remove_dir(&parent);
    }
    c.assert_no_leftovers();
}

/// The block device of the first real disk, if the host has one.
fn a_disk() -> Option<String> {
    fs::read_dir("/sys/block").ok()?.flatten().find_map(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        let virt = ["loop", "ram", "zram", "nbd", "dm-"]
            .iter()
            .any(|p| n.starts_with(p));
        (!virt)
            .then(|| fs::read_to_string(e.path().join("dev")).ok())?
            .map(|d| d.trim().to_string())
    })
}

#[test]
fn block_io_and_unified_limits() {
    if runtime_tests::skip_rootless(
        "needs a cgroup of its own: without privilege only a delegated cgroup v2 subtree is writable (rootless.rs tests that in the VM)",
    ) {
        return;
    }
    let mut c = Ctr::new("cg-more", &["sleep", "100"]);
    let disk = a_disk();
    let mut res = json!({});
    if let Some(d) = &disk {
        let (maj, min) = d.split_once(':').unwrap();
        let (maj, min): (i64, i64) = (maj.parse().unwrap(), min.parse().unwrap());
        res["blockIO"] = json!({"throttleReadBpsDevice": [{"major": maj, "minor": min, "rate": 1048576}],
                                "throttleWriteIOPSDevice": [{"major": maj, "minor": min, "rate": 300}]});
    }
    if v2() {
        res["unified"] = json!({"pids.max": "12", "memory.high": "50000000"});
    }
    c.config["linux"]["resources"] = res;
    started(&c);
    if let Some(d) = &disk {
        if v2() {
            let io = read(&cg_file(&c, "", "", "io.max"));
            assert!(
                io.contains(&format!("{d} rbps=1048576 wbps=max riops=max wiops=300")),
                "{io}"
            );
        } else {
            let f = |n: &str| read(&cg_file(&c, "blkio", n, ""));
            assert_eq!(f("blkio.throttle.read_bps_device"), format!("{d} 1048576"));
            assert_eq!(f("blkio.throttle.write_iops_device"), format!("{d} 300"));
        }
    }
    if v2() {
        assert_eq!(read(&cg_file(&c, "", "", "pids.max")), "12");
        assert_eq!(read(&cg_file(&c, "", "", "memory.high")), "49999872");
    }
    c.op_ok(&["delete", "--force", &c.id]);
    c.assert_no_leftovers();
}

/// Where hugetlb can be limited: a v1 hugetlb hierarchy, pure v2, or a
/// hybrid host whose unified root delegates hugetlb.
fn hugetlb_available() -> bool {
    std::path::Path::new("/sys/fs/cgroup/hugetlb").exists()
        || (v2()
            && fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
                .is_ok_and(|c| c.contains("hugetlb")))
        || fs::read_to_string("/sys/fs/cgroup/unified/cgroup.subtree_control")
            .is_ok_and(|c| c.contains("hugetlb"))
}

#[test]
fn hugetlb_limits() {
    if !hugetlb_available() {
        eprintln!("no hugetlb controller available to containers here: nothing to check");
        return;
    }
    let mut c = Ctr::new("cg-huge", &["sleep", "100"]);
    c.config["linux"]["resources"] =
        json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]});
    started(&c);
    // Hugetlb: v1 hugetlb controller, else cgroup2 (pure, or hybrid unified).
    let v1_huge = PathBuf::from(format!("/sys/fs/cgroup/hugetlb/{}", c.cgroup_rel()));
    let huge = if v1_huge.exists() {
        read(&v1_huge.join("hugetlb.2MB.limit_in_bytes"))
    } else if v2() {
        read(&cg_file(&c, "", "", "hugetlb.2MB.max"))
    } else {
        read(&PathBuf::from(format!(
            "/sys/fs/cgroup/unified/{}/hugetlb.2MB.max",
            c.cgroup_rel()
        )))
    };
    assert_eq!(huge, "4194304");
    c.op_ok(&["delete", "--force", &c.id]);
    c.assert_no_leftovers();
}
