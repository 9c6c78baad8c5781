//! One test per config.json statement, checked from inside the container
//! (a busybox shell reading /proc) and from outside (state, /proc/<pid>).

use runtime_tests::*;
use serde_json::json;

fn status_field(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("{key} not in {out}"))
        .trim()
        .to_string()
}

#[test]
fn hostname_and_domainname_are_set_in_the_uts_namespace() {
    let mut c = Ctr::new(
        "uts",
        &["sh", "-c", "hostname; cat /proc/sys/kernel/domainname"],
    );
    c.config["hostname"] = json!("box1");
    c.config["domainname"] = json!("example.org");
    assert_eq!(c.run_ok(), "box1\nexample.org\n");
}

#[test]
fn new_namespaces_differ_from_the_host() {
    let c = Ctr::new("ns", &["sleep", "30"]);
    c.create_ok();
    let pid = c.pid().to_string();
    for ns in ["pid_for_children", "net", "ipc", "uts", "mnt"] {
        let host_ns = if ns == "pid_for_children" { "pid" } else { ns };
        let inside = ns_inode(&pid, if ns == "pid_for_children" { "pid" } else { ns });
        assert_ne!(
            inside,
            ns_inode("self", host_ns),
            "{ns} namespace is the host's"
        );
    }
}

#[test]
fn the_process_is_pid_1_of_a_new_pid_namespace() {
    let c = Ctr::new("pid1", &["sh", "-c", "echo $$"]);
    assert_eq!(c.run_ok(), "1\n");
}

#[test]
fn namespaces_without_entries_are_shared_with_the_runtime() {
    if runtime_tests::skip_rootless(
        "replaces linux.namespaces without a user namespace: a rootless container needs its own",
    ) {
        return;
    }
    let mut c = Ctr::new("sharenet", &["sleep", "30"]);
    c.config.as_object_mut().unwrap().remove("hostname");
    c.config["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}]);
    c.create_ok();
    let pid = c.pid().to_string();
    assert_eq!(ns_inode(&pid, "net"), ns_inode("self", "net"));
    assert_eq!(ns_inode(&pid, "uts"), ns_inode("self", "uts"));
}

#[test]
fn a_namespace_path_is_joined() {
    if runtime_tests::skip_rootless(
        "replaces linux.namespaces without a user namespace: a rootless container needs its own",
    ) {
        return;
    }
    let a = Ctr::new("nsa", &["sleep", "30"]);
    a.create_ok();
    let apid = a.pid();
    let mut b = Ctr::new("nsb", &["sleep", "30"]);
    b.config["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "mount"}, {"type": "uts"},
        {"type": "network", "path": format!("/proc/{apid}/ns/net")},
        {"type": "ipc", "path": format!("/proc/{apid}/ns/ipc")}
    ]);
    b.create_ok();
    let bpid = b.pid().to_string();
    let apid = apid.to_string();
    assert_eq!(ns_inode(&bpid, "net"), ns_inode(&apid, "net"));
    assert_eq!(ns_inode(&bpid, "ipc"), ns_inode(&apid, "ipc"));
    assert_ne!(ns_inode(&bpid, "uts"), ns_inode(&apid, "uts"));
}

#[test]
fn a_pid_namespace_path_is_joined() {
    if runtime_tests::skip_rootless(
        "replaces linux.namespaces without a user namespace: a rootless container needs its own",
    ) {
        return;
    }
    let a = Ctr::new("pidnsa", &["sleep", "30"]);
    a.create_ok();
    let apid = a.pid();
    let mut b = Ctr::new(
        "pidnsb",
        &["sh", "-c", "ps -o pid,args | grep -c 'sleep 30'"],
    );
    b.config.as_object_mut().unwrap().remove("hostname");
    b.config["linux"]["namespaces"] = json!([
        {"type": "mount"}, {"type": "pid", "path": format!("/proc/{apid}/ns/pid")}
    ]);
    // The shell sees container a's sleep in the joined pid namespace.
    let out = b.run_ok();
    assert!(out.trim().parse::<u32>().unwrap() >= 1, "{out}");
}

#[test]
fn user_namespace_with_uid_and_gid_mappings() {
    if runtime_tests::skip_rootless(
        "the rootless mode already gives the container a user namespace with its own mappings",
    ) {
        return;
    }
    let mut c = Ctr::new(
        "userns",
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; id -u",
        ],
    );
    let st = std::process::Command::new("chown")
        .args(["-R", "100000:100000"])
        .arg(c.rootfs())
        .status()
        .unwrap();
    assert!(st.success());
    c.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    c.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    c.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    let out = c.run_ok();
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        words,
        ["0", "100000", "65536", "0", "100000", "65536", "0"],
        "{out}"
    );
}

#[test]
fn cgroup_namespace_hides_the_host_path() {
    let mut c = Ctr::new("cgns", &["sh", "-c", "cat /proc/self/cgroup"]);
    c.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cgroup"}));
    let out = c.run_ok();
    assert!(!out.contains(&c.id), "container cgroup path visible: {out}");
    assert!(out.lines().all(|l| l.ends_with(":/")), "{out}");
}

#[test]
fn time_namespace_offsets_shift_boottime() {
    let mut c = Ctr::new("timens", &["cat", "/proc/uptime"]);
    c.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    c.config["linux"]["timeOffsets"] = json!({"boottime": {"secs": 1000000, "nanosecs": 0}});
    let out = c.run_ok();
    let inside: f64 = out.split_whitespace().next().unwrap().parse().unwrap();
    let host: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(inside > host + 999_000.0, "inside {inside} host {host}");
}

#[test]
fn the_process_is_in_its_cgroup_and_it_goes_on_delete() {
    if runtime_tests::skip_rootless(
        "needs a cgroup of its own: without privilege only a delegated cgroup v2 subtree is writable (rootless.rs tests that in the VM)",
    ) {
        return;
    }
    let c = Ctr::new("cgroup", &["sleep", "30"]);
    c.create_ok();
    let pid = c.pid();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in cg
        .lines()
        .filter(|l| !l.starts_with("0::") || cgroup_dirs("").len() == 1)
    {
        assert!(
            line.ends_with(&format!("/{}", c.id)),
            "not in its cgroup: {line}"
        );
    }
    c.op_ok(&["delete", "--force", &c.id]);
    c.assert_no_leftovers();
}

#[test]
fn mounts_tmpfs_with_size_and_mode_and_a_read_only_bind() {
    let mut c = Ctr::new(
        "mounts",
        &[
            "sh",
            "-c",
            "grep -E ' /(data|scratch) ' /proc/self/mounts; stat -c %a /scratch; cat /data/f; touch /data/x 2>/dev/null && echo writable || echo readonly",
        ],
    );
    let host = c.dir.join("hostdata");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "from host\n").unwrap();
    let m = c.config["mounts"].as_array_mut().unwrap();
    m.push(json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "size=1m", "mode=1770"]}));
    m.push(
        json!({"destination": "/data", "type": "bind", "source": host, "options": ["rbind", "ro"]}),
    );
    let out = c.run_ok();
    assert!(
        out.contains("tmpfs /scratch tmpfs rw,nosuid,nodev"),
        "{out}"
    );
    assert!(out.contains("size=1024k"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains(" /data ") && l.contains(" ro,")),
        "{out}"
    );
    assert!(out.contains("1770\nfrom host\nreadonly\n"), "{out}");
}

#[test]
fn root_readonly_makes_root_read_only() {
    let mut c = Ctr::new(
        "rootro",
        &[
            "sh",
            "-c",
            "touch /x 2>/dev/null && echo writable || echo readonly; touch /tmp/y 2>/dev/null && echo w2 || echo r2",
        ],
    );
    c.config["root"]["readonly"] = json!(true);
    assert_eq!(c.run_ok(), "readonly\nr2\n");
}

#[test]
fn masked_paths_are_empty_and_readonly_paths_are_read_only() {
    // /proc/kcore is absent on some kernels: use entries every kernel has.
    let c = Ctr::new(
        "masked",
        &[
            "sh",
            "-c",
            "wc -c < /proc/keys; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo writable || echo readonly",
        ],
    );
    assert_eq!(c.run_ok(), "0\n0\nreadonly\n");
}

#[test]
fn default_devices_and_dev_links_exist() {
    let c = Ctr::new(
        "devices",
        &[
            "sh",
            "-c",
            "for d in null zero full random urandom tty; do stat -c '%n %F %t,%T %a' /dev/$d; done; for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done; test -d /dev/shm && echo shm",
        ],
    );
    let out = c.run_ok();
    for want in [
        "/dev/null character special file 1,3 666",
        "/dev/zero character special file 1,5 666",
        "/dev/full character special file 1,7 666",
        "/dev/random character special file 1,8 666",
        "/dev/urandom character special file 1,9 666",
        "/dev/tty character special file 5,0 666",
        "/proc/self/fd\n/proc/self/fd/0\n/proc/self/fd/1\n/proc/self/fd/2\npts/ptmx",
        "shm",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
}

#[test]
fn linux_devices_are_created_with_mode_and_owner() {
    if runtime_tests::skip_rootless(
        "mknod needs privilege: in a user namespace device nodes are bind mounts of the host's, and this one is not on the host",
    ) {
        return;
    }
    let mut c = Ctr::new(
        "lindev",
        &["stat", "-c", "%F %t,%T %a %u:%g", "/dev/mynull"],
    );
    c.config["linux"]["devices"] = json!([{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640, "uid": 1000, "gid": 5}]);
    assert_eq!(c.run_ok(), "character special file 1,3 640 1000:5\n");
}

#[test]
fn process_user_uid_gid_additional_gids_and_umask() {
    let mut c = Ctr::new(
        "user",
        &[
            "sh",
            "-c",
            "grep -E '^(Uid|Gid|Groups)' /proc/self/status; umask",
        ],
    );
    c.config["process"]["user"] =
        json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 100], "umask": 0o027});
    let out = c.run_ok();
    assert_eq!(
        status_field(&out, "Uid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1000"; 4]
    );
    assert_eq!(
        status_field(&out, "Gid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1000"; 4]
    );
    assert_eq!(status_field(&out, "Groups"), "5 100");
    assert!(out.trim_end().ends_with("0027"), "{out}");
}

#[test]
fn process_cwd_and_env() {
    let mut c = Ctr::new("cwdenv", &["sh", "-c", "pwd; echo $FOO"]);
    c.config["process"]["cwd"] = json!("/tmp/work");
    c.config["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!("FOO=bar baz"));
    assert_eq!(c.run_ok(), "/tmp/work\nbar baz\n");
}

#[test]
fn rlimits_are_applied() {
    let mut c = Ctr::new(
        "rlimits",
        &["sh", "-c", "ulimit -Sn; ulimit -Hn; ulimit -Hc"],
    );
    c.config["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
    ]);
    assert_eq!(c.run_ok(), "512\n1000\n0\n");
}

#[test]
fn capabilities_all_five_sets() {
    let mut c = Ctr::new("caps", &["sh", "-c", "grep ^Cap /proc/self/status"]);
    let set = ["CAP_NET_BIND_SERVICE", "CAP_KILL"];
    c.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_CHOWN"],
        "effective": set, "permitted": set, "inheritable": set, "ambient": ["CAP_NET_BIND_SERVICE"]
    });
    let out = c.run_ok();
    // CAP_CHOWN=0, CAP_KILL=5, CAP_NET_BIND_SERVICE=10
    assert_eq!(status_field(&out, "CapBnd"), "0000000000000421");
    assert_eq!(status_field(&out, "CapPrm"), "0000000000000420");
    assert_eq!(status_field(&out, "CapEff"), "0000000000000420");
    assert_eq!(status_field(&out, "CapInh"), "0000000000000420");
    assert_eq!(status_field(&out, "CapAmb"), "0000000000000400");
}

#[test]
fn ambient_capabilities_survive_a_non_root_user() {
    let mut c = Ctr::new(
        "ambient",
        &["sh", "-c", "grep -E '^Cap(Eff|Amb)' /proc/self/status"],
    );
    let set = ["CAP_NET_BIND_SERVICE"];
    c.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    c.config["process"]["capabilities"] = json!({"bounding": set, "effective": set, "permitted": set, "inheritable": set, "ambient": set});
    let out = c.run_ok();
    assert_eq!(status_field(&out, "CapEff"), "0000000000000400");
    assert_eq!(status_field(&out, "CapAmb"), "0000000000000400");
}

#[test]
fn no_new_privileges_true_and_false() {
    for (v, want) in [(true, "1"), (false, "0")] {
        let mut c = Ctr::new("nnp", &["sh", "-c", "grep NoNewPrivs /proc/self/status"]);
        c.config["process"]["noNewPrivileges"] = json!(v);
        assert_eq!(status_field(&c.run_ok(), "NoNewPrivs"), want);
    }
}

#[test]
fn sysctl_is_set_in_the_container_namespaces() {
    let mut c = Ctr::new(
        "sysctl",
        &[
            "sh",
            "-c",
            "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni",
        ],
    );
    c.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"});
    assert_eq!(c.run_ok(), "1\n1234\n");
}

#[test]
fn oom_score_adj_is_set() {
    let mut c = Ctr::new("oom", &["cat", "/proc/self/oom_score_adj"]);
    c.config["process"]["oomScoreAdj"] = json!(500);
    assert_eq!(c.run_ok(), "500\n");
}

#[test]
fn terminal_master_goes_to_the_console_socket() {
    let mut c = Ctr::new("tty", &["sh", "-c", "tty; stty size; echo done"]);
    c.config["process"]["terminal"] = json!(true);
    c.config["process"]["consoleSize"] = json!({"height": 30, "width": 100});
    let sock = c.dir.join("console.sock");
    let listener = runtime_tests::listen(&sock);
    let o = c.create_with(&["--console-socket", sock.to_str().unwrap()]);
    assert!(o.status.success(), "{}", c.output());
    let (conn, _) = listener.accept().unwrap();
    let (_name, master) = runtime_tests::sys::recv_fd(&conn).unwrap();
    c.op_ok(&["start", &c.id]);
    let out = runtime_tests::sys::read_until(master, "done");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("30 100"), "{out:?}");
}

#[test]
fn cgroup_mount_shows_the_container_cgroup_with_and_without_cgroupns() {
    for cgroupns in [true, false] {
        let mut c = Ctr::new(
            "cgmount",
            &[
                "sh",
                "-c",
                "grep -c ' /sys/fs/cgroup' /proc/self/mounts; ls /sys/fs/cgroup | wc -l; d=/sys/fs/cgroup; [ -d $d/pids ] && d=$d/pids; touch $d/x 2>/dev/null && echo writable || echo readonly; cat /sys/fs/cgroup/pids/cgroup.procs /sys/fs/cgroup/cgroup.procs 2>/dev/null | head -1",
            ],
        );
        if cgroupns {
            c.config["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "cgroup"}));
        }
        c.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}));
        let out = c.run_ok();
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].parse::<u32>().unwrap() >= 1,
            "cgroupns={cgroupns}: {out}"
        );
        assert!(
            lines[1].parse::<u32>().unwrap() >= 1,
            "cgroupns={cgroupns}: {out}"
        );
        // `ro` makes the cgroup filesystems read-only (on v1 the tmpfs
        // holding them stays writable, as with runc).
        assert_eq!(lines[2], "readonly", "cgroupns={cgroupns}: {out}");
        // The only process in the container's own cgroup is the shell (pid 1).
        assert_eq!(
            lines.get(3).copied(),
            Some("1"),
            "cgroupns={cgroupns}: {out}"
        );
    }
}

/// A read-only path is read-only with what is mounted under it (/dev/shm
/// under /dev). runc 1.1 fails this one: its remount with MS_REC changes only
/// the top mount, leaving submounts writable.
#[test]
fn readonly_paths_cover_their_submounts() {
    let mut c = Ctr::new(
        "ro-sub",
        &[
            "sh",
            "-c",
            "touch /dev/x 2>/dev/null && echo top-writable || echo top-readonly; touch /dev/shm/x 2>/dev/null && echo sub-writable || echo sub-readonly; echo ok > /dev/null && echo null-works",
        ],
    );
    c.config["linux"]["readonlyPaths"] = json!(["/dev"]);
    assert_eq!(c.run_ok(), "top-readonly\nsub-readonly\nnull-works\n");
}
