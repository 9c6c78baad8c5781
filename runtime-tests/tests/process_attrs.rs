//! runtime-spec 1.3's per-process and per-container attributes:
//! linux.personality, process.ioPriority, process.scheduler,
//! process.execCPUAffinity, linux.memoryPolicy, linux.netDevices,
//! linux.intelRdt and linux.mountLabel. Each is checked from inside the
//! container or on its pid from the host; bad values must fail cleanly.
//!
//! runc 1.1.5 predates these fields and ignores them: the tests that need
//! a field to take effect skip on runc, saying which field.

use std::process::{Command, Output};

use runtime_tests::*;
use serde_json::{Value, json};

fn skip_old_runc(field: &str) -> bool {
    if runtime_name() == "runc" {
        eprintln!("skipped for runc: runc 1.1.5 does not implement {field}");
        return true;
    }
    false
}

/// Fields of /proc/<pid>/stat after the command name (field 3 is index 0).
fn stat_fields(pid: i32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(") ").unwrap();
    rest.split_whitespace().map(str::to_string).collect()
}

fn assert_failed_cleanly(c: &Ctr, o: &Output, words: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr).to_string() + &c.output();
    assert!(!o.status.success(), "succeeded on bad input");
    assert!(!err.trim().is_empty(), "no error message");
    if runtime_name() == "ocirun" {
        for w in words {
            assert!(err.contains(w), "error {err:?} does not name {w:?}");
        }
    }
    c.assert_no_leftovers();
}

#[test]
fn personality_linux32_makes_uname_report_i686() {
    if skip_old_runc("linux.personality") {
        return;
    }
    let mut c = Ctr::new("pers", &["uname", "-m"]);
    c.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    assert_eq!(c.run_ok(), "i686\n");
    let mut c = Ctr::new("pers64", &["uname", "-m"]);
    c.config["linux"]["personality"] = json!({"domain": "LINUX"});
    assert_eq!(c.run_ok(), format!("{}\n", std::env::consts::ARCH));
}

#[test]
fn io_priority_is_set_for_the_process() {
    if skip_old_runc("process.ioPriority") {
        return;
    }
    let mut c = Ctr::new("ioprio", &["ionice", "-p", "1"]);
    c.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 5});
    assert_eq!(c.run_ok().trim(), "best-effort: prio 5");
    let mut c = Ctr::new("ioidle", &["ionice", "-p", "1"]);
    c.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
    // busybox prints no level for the idle class.
    assert_eq!(c.run_ok().trim(), "idle");
}

#[test]
fn scheduler_policy_nice_and_priority_are_set() {
    if skip_old_runc("process.scheduler") {
        return;
    }
    // stat field 19 is nice, 41 policy (index = field - 3).
    let mut c = Ctr::new("schedbatch", &["sleep", "30"]);
    c.config["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
    c.create_ok();
    let f = stat_fields(c.pid());
    assert_eq!((f[16].as_str(), f[38].as_str()), ("7", "3"), "nice, policy");

    let mut c = Ctr::new("schedidle", &["sleep", "30"]);
    c.config["process"]["scheduler"] = json!({
        "policy": "SCHED_IDLE", "flags": ["SCHED_FLAG_RESET_ON_FORK"]
    });
    c.create_ok();
    // SCHED_RESET_ON_FORK shows as 0x40000000 in sched_getscheduler.
    let p = runtime_tests::sys::sched_getscheduler(c.pid());
    assert_eq!(p, 5 | 0x4000_0000, "policy with reset-on-fork");
}

#[test]
fn a_realtime_policy_gets_its_priority_or_a_clear_error() {
    if skip_old_runc("process.scheduler") {
        return;
    }
    let mut c = Ctr::new("schedfifo", &["sleep", "30"]);
    c.config["process"]["scheduler"] = json!({"policy": "SCHED_FIFO", "priority": 10});
    let o = c.create();
    if o.status.success() {
        // stat field 40 is rt_priority, 41 policy.
        let f = stat_fields(c.pid());
        assert_eq!((f[37].as_str(), f[38].as_str()), ("10", "1"));
    } else {
        // A v1 cpu cgroup with no realtime budget (cpu.rt_runtime_us 0)
        // refuses SCHED_FIFO: the error names the field, nothing is left.
        assert_failed_cleanly(&c, &o, &["process.scheduler", "SCHED_FIFO", "EPERM"]);
    }
}

#[test]
fn exec_cpu_affinity_applies_to_exec_not_to_the_init() {
    if skip_old_runc("process.execCPUAffinity") {
        return;
    }
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipped: needs two CPUs");
        return;
    }
    let mut c = Ctr::new("affinity", &["sleep", "30"]);
    c.config["process"]["execCPUAffinity"] = json!({"final": "1"});
    c.create_ok();
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.pid())).unwrap();
    assert!(
        !status.contains("Cpus_allowed_list:\t1\n"),
        "the init got execCPUAffinity: {status}"
    );
    let out = c.op_ok(&[
        "exec",
        &c.id,
        "grep",
        "Cpus_allowed_list",
        "/proc/self/status",
    ]);
    assert_eq!(out, "Cpus_allowed_list:\t1\n");

    // initial, then final once in the cgroup.
    let mut c = Ctr::new("affinity2", &["sleep", "30"]);
    c.config["process"]["execCPUAffinity"] = json!({"initial": "1", "final": "0"});
    c.create_ok();
    let out = c.op_ok(&[
        "exec",
        &c.id,
        "grep",
        "Cpus_allowed_list",
        "/proc/self/status",
    ]);
    assert_eq!(out, "Cpus_allowed_list:\t0\n");
}

#[test]
fn memory_policy_is_set_for_the_process() {
    if skip_old_runc("linux.memoryPolicy") {
        return;
    }
    let mut c = Ctr::new(
        "mpol",
        &["sh", "-c", "grep -m1 -o 'bind:0' /proc/self/numa_maps"],
    );
    c.config["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0"});
    assert_eq!(c.run_ok(), "bind:0\n");
    let mut c = Ctr::new(
        "mpolil",
        &[
            "sh",
            "-c",
            "grep -m1 -o 'interleave:0' /proc/self/numa_maps",
        ],
    );
    c.config["linux"]["memoryPolicy"] = json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"});
    assert_eq!(c.run_ok(), "interleave:0\n");
}

#[test]
fn a_memory_node_the_host_lacks_fails_cleanly() {
    if skip_old_runc("linux.memoryPolicy") {
        return;
    }
    let mut c = Ctr::new("mpolbad", &["true"]);
    c.config["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "1000"});
    let o = c.run();
    assert_failed_cleanly(&c, &o, &["linux.memoryPolicy", "1000"]);
}

/// A veth pair in the host's network namespace (the VM's kernel may have
/// no dummy driver): `.0` is the end a test moves, the peer stays. Both are
/// deleted on drop when still there.
struct Veth(String);

impl Veth {
    fn new(tag: &str) -> Veth {
        let name = format!("ort{}{tag}", std::process::id() % 100_000);
        let ip = |args: &[&str]| {
            let o = Command::new("ip")
                .args(args)
                .output()
                .expect("ip(8): install iproute2");
            assert!(
                o.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        let peer = format!("{name}p");
        ip(&["link", "add", &name, "type", "veth", "peer", "name", &peer]);
        let d = Veth(name);
        ip(&["addr", "add", "10.123.45.6/24", "dev", &d.0]);
        d
    }

    fn on_host(&self) -> bool {
        std::path::Path::new("/sys/class/net")
            .join(&self.0)
            .exists()
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        for n in [self.0.clone(), format!("{}p", self.0)] {
            let _ = Command::new("ip").args(["link", "del", &n]).output();
        }
    }
}

#[test]
fn net_devices_are_moved_renamed_kept_addressed_and_up() {
    if runtime_tests::skip_rootless("moving a host network device needs CAP_NET_ADMIN on the host")
    {
        return;
    }
    if skip_old_runc("linux.netDevices") {
        return;
    }
    let d = Veth::new("a");
    let mut c = Ctr::new(
        "netdev",
        &["sh", "-c", "ip -o link show ctr0; ip -o -4 addr show ctr0"],
    );
    c.config["linux"]["netDevices"] = json!({ &d.0: {"name": "ctr0"} });
    c.create_ok();
    assert!(!d.on_host(), "{} is still on the host", d.0);
    c.op_ok(&["start", &c.id]);
    c.wait_status("stopped");
    let out = c.output();
    assert!(out.contains("ctr0") && out.contains(",UP"), "{out}");
    assert!(out.contains("10.123.45.6/24"), "address not kept: {out}");
}

#[test]
fn a_missing_net_device_fails_and_leaves_the_others_on_the_host() {
    if runtime_tests::skip_rootless("moving a host network device needs CAP_NET_ADMIN on the host")
    {
        return;
    }
    if skip_old_runc("linux.netDevices") {
        return;
    }
    let d = Veth::new("b");
    let mut c = Ctr::new("netdevmissing", &["true"]);
    c.config["linux"]["netDevices"] = json!({ &d.0: {}, "ortnosuchdev": {} });
    let o = c.run();
    assert_failed_cleanly(&c, &o, &["linux.netDevices", "ortnosuchdev"]);
    assert!(d.on_host(), "{} left the host", d.0);
}

#[test]
fn net_devices_need_a_new_network_namespace() {
    if runtime_tests::skip_rootless(
        "replaces linux.namespaces without a user namespace: a rootless container needs its own",
    ) {
        return;
    }
    if skip_old_runc("linux.netDevices") {
        return;
    }
    let d = Veth::new("c");
    let mut c = Ctr::new("netdevnons", &["true"]);
    c.config.as_object_mut().unwrap().remove("hostname");
    c.config["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}]);
    c.config["linux"]["netDevices"] = json!({ &d.0: {} });
    let o = c.run();
    assert_failed_cleanly(&c, &o, &["linux.netDevices", "network namespace"]);
    assert!(d.on_host());
}

#[test]
fn intel_rdt_without_resctrl_is_an_error() {
    let resctrl = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(" - resctrl ");
    if resctrl {
        eprintln!("skipped: resctrl is mounted on this host");
        return;
    }
    if runtime_name() == "runc" {
        eprintln!("skipped for runc: runc 1.1.5 ignores linux.intelRdt without resctrl");
        return;
    }
    let mut c = Ctr::new("rdt", &["true"]);
    c.config["linux"]["intelRdt"] = json!({"closID": "ocirun-test"});
    let o = c.run();
    assert_failed_cleanly(&c, &o, &["linux.intelRdt", "resctrl"]);
}

#[test]
fn mount_label_without_selinux_is_accepted() {
    if std::path::Path::new("/sys/fs/selinux/enforce").exists() {
        eprintln!("skipped: SELinux is on");
        return;
    }
    if runtime_name() == "runc" {
        // Its go-selinux adds context="..." to tmpfs data even with SELinux
        // off, and the kernel refuses it (EINVAL); newer go-selinux does not.
        eprintln!("skipped for runc: runc 1.1.5 passes mountLabel to the kernel without SELinux");
        return;
    }
    let mut c = Ctr::new("mountlabel", &["true"]);
    c.config["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0:c1,c2");
    c.run_ok();
}

#[test]
fn unsupported_values_are_errors_naming_field_and_value() {
    if skip_old_runc("these fields") {
        return;
    }
    let cases: &[(&str, &str, Value, &[&str])] = &[
        (
            "process",
            "scheduler",
            json!({"policy": "SCHED_FOO"}),
            &["process.scheduler.policy", "SCHED_FOO"],
        ),
        (
            "process",
            "scheduler",
            json!({"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_FOO"]}),
            &["process.scheduler.flags", "SCHED_FLAG_FOO"],
        ),
        (
            "process",
            "scheduler",
            json!({"policy": "SCHED_FIFO", "priority": 100}),
            &["process.scheduler.priority", "100"],
        ),
        (
            "process",
            "ioPriority",
            json!({"class": "IOPRIO_CLASS_FOO", "priority": 1}),
            &["process.ioPriority.class", "IOPRIO_CLASS_FOO"],
        ),
        (
            "process",
            "ioPriority",
            json!({"class": "IOPRIO_CLASS_BE", "priority": 8}),
            &["process.ioPriority.priority", "8"],
        ),
        (
            "process",
            "execCPUAffinity",
            json!({"final": "1-0"}),
            &["process.execCPUAffinity.final", "1-0"],
        ),
        (
            "linux",
            "personality",
            json!({"domain": "LINUX64"}),
            &["linux.personality.domain", "LINUX64"],
        ),
        (
            "linux",
            "personality",
            json!({"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}),
            &["linux.personality.flags", "ADDR_NO_RANDOMIZE"],
        ),
        (
            "linux",
            "memoryPolicy",
            json!({"mode": "MPOL_FOO"}),
            &["linux.memoryPolicy.mode", "MPOL_FOO"],
        ),
        (
            "linux",
            "memoryPolicy",
            json!({"mode": "MPOL_BIND", "nodes": "0-"}),
            &["linux.memoryPolicy.nodes", "0-"],
        ),
        (
            "linux",
            "memoryPolicy",
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_FOO"]}),
            &["linux.memoryPolicy.flags", "MPOL_F_FOO"],
        ),
        (
            "linux",
            "netDevices",
            json!({"eth0": {"name": "a/b"}}),
            &["linux.netDevices.eth0.name", "a/b"],
        ),
    ];
    for (section, key, value, words) in cases {
        let mut c = Ctr::new("badattr", &["true"]);
        c.config[section][key] = value.clone();
        let o = c.run();
        assert_failed_cleanly(&c, &o, words);
    }
}

#[test]
fn features_lists_what_is_supported() {
    if runtime_name() != "ocirun" {
        eprintln!("skipped for {}: checks ocirun's own list", runtime_name());
        return;
    }
    let o = Command::new(runtime()).arg("features").output().unwrap();
    assert!(o.status.success());
    let f: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(f["linux"]["netDevices"]["enabled"], true);
    assert_eq!(f["linux"]["intelRdt"]["enabled"], false);
    let modes = f["linux"]["memoryPolicy"]["modes"].as_array().unwrap();
    assert!(modes.iter().any(|m| m == "MPOL_BIND"));
}

/// The runtime started with SIGHUP, SIGUSR1, SIGPIPE and two realtime
/// signals ignored (as by nohup or a shell's `trap ''`), running `args`: a
/// disposition the container's process must not inherit, since execve
/// keeps it. Signals 32 and 33, which no glibc program can set, are
/// covered where the test's own environment ignores them (cargo's test
/// processes do): runc 1.1.5 leaves 32 ignored in the container, crun
/// 1.8.1 32 and 33.
fn with_signals_ignored(c: &Ctr, args: &[&str]) -> Output {
    let wrap = "trap '' HUP USR1 PIPE 34 64; exec \"$@\"";
    let mut cmd = if rootless() {
        as_test_user("sh")
    } else {
        Command::new("sh")
    };
    cmd.args(["-c", wrap, "sh"])
        .arg(runtime())
        .arg("--root")
        .arg(&c.root);
    if systemd() {
        cmd.arg("--systemd-cgroup");
    }
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn assert_no_signal_ignored(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "SigIgn:\t0000000000000000\n",
        "{what}"
    );
}

#[test]
fn signals_the_runtime_ignores_are_default_in_the_container() {
    let grep = ["grep", "SigIgn", "/proc/self/status"];
    let c = Ctr::new("sigign", &grep);
    c.write_config();
    let bundle = c.bundle();
    let o = with_signals_ignored(&c, &["run", "--bundle", bundle.to_str().unwrap(), &c.id]);
    assert_no_signal_ignored(&o, "run");
    // Without capabilities in the config.
    let mut c = Ctr::new("sigign-nocaps", &grep);
    c.config["process"]
        .as_object_mut()
        .unwrap()
        .remove("capabilities");
    c.write_config();
    let bundle = c.bundle();
    let o = with_signals_ignored(&c, &["run", "--bundle", bundle.to_str().unwrap(), &c.id]);
    assert_no_signal_ignored(&o, "run without capabilities");
    // A process exec'd into a running container.
    let c = Ctr::new("sigign-exec", &["sleep", "60"]);
    c.create_ok();
    c.op_ok(&["start", &c.id]);
    let mut args = vec!["exec", &c.id];
    args.extend(grep);
    let o = with_signals_ignored(&c, &args);
    assert_no_signal_ignored(&o, "exec");
}
