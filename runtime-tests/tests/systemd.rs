//! The systemd cgroup driver (`--systemd-cgroup`), seen from systemd's side
//! (`systemctl show`) and from the cgroup files: the scope's life, the
//! `slice:prefix:name` forms, limits and updates in both views, the
//! errors. Runs only under `RUNTIME_SYSTEMD=1` on a host whose PID 1 is
//! systemd with cgroup v2 (scripts/test-systemd-cgroup boots one); the
//! cgroups and devices groups run there too with the same variable.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use runtime_tests::*;
use serde_json::json;

fn on() -> bool {
    if !systemd() {
        eprintln!("skipped: RUNTIME_SYSTEMD=1 runs these (a systemd host)");
        return false;
    }
    true
}

/// ocirun's errors are one line; runc logs warnings before its error.
fn one_line_error(what: &str, text: &str) {
    assert!(!text.trim().is_empty(), "{what}: no error");
    if runtime_name() == "ocirun" {
        assert_eq!(text.trim().lines().count(), 1, "{what}: {text}");
    }
}

fn started(c: &Ctr) {
    c.create_ok();
    c.op_ok(&["start", &c.id]);
}

fn read(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

fn scope_dir(c: &Ctr) -> PathBuf {
    Path::new("/sys/fs/cgroup").join(c.cgroup_rel())
}

fn systemctl(args: &[&str]) -> std::process::Output {
    Command::new("systemctl").args(args).output().unwrap()
}

#[test]
fn the_scope_lives_with_the_container_and_goes_with_delete() {
    if !on() {
        return;
    }
    let c = Ctr::new("sd-life", &["sleep", "100"]);
    c.create_ok();
    let unit = c.unit().unwrap();
    // Created: the init is in the scope already, as systemd sees it.
    assert_eq!(unit_property(&unit, "ActiveState"), "active");
    assert_eq!(unit_property(&unit, "Slice"), "system.slice");
    assert_eq!(unit_property(&unit, "Delegate"), "yes");
    assert_eq!(
        unit_property(&unit, "ControlGroup"),
        format!("/system.slice/{unit}")
    );
    assert!(
        unit_property(&unit, "Description").contains(&c.id),
        "{}",
        unit_property(&unit, "Description")
    );
    let pid = c.pid();
    let own = read(Path::new(&format!("/proc/{pid}/cgroup")));
    assert_eq!(own, format!("0::/system.slice/{unit}"));
    assert!(read(&scope_dir(&c).join("cgroup.procs")).contains(&pid.to_string()));
    c.op_ok(&["start", &c.id]);
    // exec joins the same scope.
    let o = c.op_ok(&["exec", &c.id, "cat", "/proc/self/cgroup"]);
    assert_eq!(o.trim(), format!("0::/system.slice/{unit}"));
    assert_eq!(c.status(), "running");
    c.op_ok(&["delete", "--force", &c.id]);
    assert_eq!(unit_property(&unit, "LoadState"), "not-found");
    assert!(!scope_dir(&c).exists());
    c.assert_no_leftovers();
}

#[test]
fn a_container_that_exits_by_itself_is_deleted_cleanly() {
    if !on() {
        return;
    }
    let c = Ctr::new("sd-exit", &["true"]);
    started(&c);
    c.wait_status("stopped");
    // systemd drops an empty scope; delete then has no unit to stop.
    c.op_ok(&["delete", &c.id]);
    c.assert_no_leftovers();
}

#[test]
fn limits_agree_in_systemd_and_in_the_files() {
    if !on() {
        return;
    }
    let mut c = Ctr::new("sd-limits", &["sleep", "100"]);
    c.config["linux"]["resources"] = json!({
        "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728},
        "cpu": {"shares": 512, "quota": 12345, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 64},
        "blockIO": {"weight": 500}
    });
    started(&c);
    let u = c.unit().unwrap();
    let d = scope_dir(&c);
    let both = |prop: &str, want_prop: &str, file: &str, want_file: &str| {
        assert_eq!(unit_property(&u, prop), want_prop, "systemd's {prop}");
        assert_eq!(read(&d.join(file)), want_file, "{file}");
    };
    both("MemoryMax", "67108864", "memory.max", "67108864");
    both("MemoryLow", "33554432", "memory.low", "33554432");
    both("MemorySwapMax", "67108864", "memory.swap.max", "67108864");
    // shares 512 -> weight 20 (runc's formula)
    both("CPUWeight", "20", "cpu.weight", "20");
    // 12345/100000 rounds up to 13% in both views, as later runc does;
    // runc 1.1 rounds systemd's value only, so the views disagree there.
    if runtime_name() == "runc" {
        assert_eq!(unit_property(&u, "CPUQuotaPerSecUSec"), "130ms");
        assert_eq!(read(&d.join("cpu.max")), "12345 100000");
        eprintln!("runc 1.1: CPUQuotaPerSecUSec 130ms but cpu.max 12345 100000");
    } else {
        both("CPUQuotaPerSecUSec", "130ms", "cpu.max", "13000 100000");
    }
    assert_eq!(unit_property(&u, "CPUQuotaPeriodUSec"), "100ms");
    both("AllowedCPUs", "0", "cpuset.cpus", "0");
    both("AllowedMemoryNodes", "0", "cpuset.mems", "0");
    both("TasksMax", "64", "pids.max", "64");
    // blkio 500 -> io 4950 (runc's formula); BFQ takes the weight as is.
    // runc 1.1 sets no IOWeight (the file only).
    if runtime_name() == "runc" {
        eprintln!("runc 1.1: IOWeight {}", unit_property(&u, "IOWeight"));
    } else {
        assert_eq!(unit_property(&u, "IOWeight"), "4950");
    }
    if d.join("io.bfq.weight").exists() {
        assert!(read(&d.join("io.bfq.weight")).contains("500"));
    } else if d.join("io.weight").exists() {
        assert_eq!(read(&d.join("io.weight")), "default 4950");
    }
    // Devices: systemd has the same allow list (runc's defaults).
    assert_eq!(unit_property(&u, "DevicePolicy"), "strict");
    let allow = unit_property(&u, "DeviceAllow");
    // The pty slaves as `char-136`, or by their /proc/devices group
    // (`char-pts`, runc 1.1): systemd takes both.
    for want in ["/dev/char/1:3 rwm", "char-* m"] {
        assert!(allow.contains(want), "{want} not in DeviceAllow {allow}");
    }
    assert!(
        allow.contains("char-136 rwm") || allow.contains("char-pts rwm"),
        "no pty slaves in DeviceAllow {allow}"
    );
    // update: systemd and the files change together.
    c.op_ok(&[
        "update",
        "--memory",
        "128m",
        "--pids-limit",
        "40",
        "--cpu-share",
        "1024",
        &c.id,
    ]);
    both("MemoryMax", "134217728", "memory.max", "134217728");
    both("TasksMax", "40", "pids.max", "40");
    both("CPUWeight", "39", "cpu.weight", "39");
    // A refused update changes neither view.
    let o = c.op(&["update", "--memory", "96m", "--cpuset-cpus", "4000", &c.id]);
    assert!(!o.status.success());
    both("MemoryMax", "134217728", "memory.max", "134217728");
    c.op_ok(&["delete", "--force", &c.id]);
    c.assert_no_leftovers();
}

#[test]
fn a_slice_that_does_not_exist_is_made_nested() {
    if !on() {
        return;
    }
    let mut c = Ctr::new("sd-slice", &["sleep", "100"]);
    c.config["linux"]["cgroupsPath"] = json!(format!("rtnest-a-b.slice:p:{}", c.id));
    started(&c);
    let unit = format!("p-{}.scope", c.id);
    let dir = PathBuf::from(format!(
        "/sys/fs/cgroup/rtnest.slice/rtnest-a.slice/rtnest-a-b.slice/{unit}"
    ));
    assert!(
        read(&dir.join("cgroup.procs")).contains(&c.pid().to_string()),
        "{}",
        dir.display()
    );
    assert_eq!(unit_property(&unit, "Slice"), "rtnest-a-b.slice");
    assert_eq!(unit_property("rtnest-a-b.slice", "ActiveState"), "active");
    c.op_ok(&["delete", "--force", &c.id]);
    assert_eq!(unit_property(&unit, "LoadState"), "not-found");
    assert!(!dir.exists());
    // The slices stay, as with runc: they are systemd's.
    let _ = systemctl(&["stop", "rtnest.slice"]);
    assert!(!c.root.join(&c.id).exists());
}

#[test]
fn default_and_empty_parts_of_the_path() {
    if !on() {
        return;
    }
    // An empty slice is system.slice; the name may be a whole scope name.
    if runtime_name() != "ocirun" {
        eprintln!(
            "skipped for {}: runc 1.1 makes \"-NAME.scope\" of an empty prefix and adds .scope again",
            runtime_name()
        );
        return;
    }
    let mut c = Ctr::new("sd-empty", &["sleep", "100"]);
    let unit = format!("rtempty-{}.scope", c.id);
    c.config["linux"]["cgroupsPath"] = json!(format!("::{unit}"));
    started(&c);
    assert_eq!(
        unit_property(&unit, "ControlGroup"),
        format!("/system.slice/{unit}")
    );
    c.op_ok(&["delete", "--force", &c.id]);
    assert_eq!(unit_property(&unit, "LoadState"), "not-found");
    assert!(!c.root.join(&c.id).exists());
}

#[test]
fn malformed_paths_fail_in_one_line_and_leave_nothing() {
    if !on() {
        return;
    }
    for path in [
        "/abs/path",
        "a:b",
        "a:b:c:d",
        "bad.scope:p:n",
        "a--b.slice:p:n",
        "system.slice:p:a/b",
    ] {
        let mut c = Ctr::new("sd-bad", &["true"]);
        c.config["linux"]["cgroupsPath"] = json!(path);
        let o = c.create();
        let text = c.output();
        assert!(!o.status.success(), "{path} was taken");
        one_line_error(path, &text);
        c.assert_no_leftovers();
    }
}

#[test]
fn a_unit_that_cannot_start_fails_create_and_leaves_nothing() {
    if !on() {
        return;
    }
    // A slice masked (in /run, the VM's own) cannot be started: systemd
    // refuses the scope in it, or its job fails.
    let slice = "rtmasked.slice";
    let o = systemctl(&["mask", "--runtime", slice]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut c = Ctr::new("sd-masked", &["true"]);
    c.config["linux"]["cgroupsPath"] = json!(format!("{slice}:p:{}", c.id));
    let o = c.create();
    let text = c.output();
    let _ = systemctl(&["unmask", "--runtime", slice]);
    assert!(!o.status.success(), "create in a masked slice worked");
    one_line_error("masked slice", &text);
    assert!(text.contains(&format!("p-{}.scope", c.id)), "{text}");
    assert_eq!(
        unit_property(&format!("p-{}.scope", c.id), "LoadState"),
        "not-found"
    );
    assert!(!Path::new(&format!("/sys/fs/cgroup/{slice}/p-{}.scope", c.id)).exists());
    assert!(!c.root.join(&c.id).exists());
}

#[test]
fn a_unit_name_in_use_fails_create_and_leaves_the_other_alone() {
    if !on() {
        return;
    }
    if runtime_name() != "ocirun" {
        eprintln!(
            "skipped for {}: runc 1.1 takes UnitExists as success and joins the other scope",
            runtime_name()
        );
        return;
    }
    let c = Ctr::new("sd-taken", &["true"]);
    let unit = c.unit().unwrap();
    // Someone else's scope with the container's unit name.
    let mut other = Command::new("systemd-run")
        .args(["--scope", "--unit", &unit, "sleep", "100"])
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if unit_property(&unit, "ActiveState") == "active" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(unit_property(&unit, "ActiveState"), "active");
    let o = c.create();
    let text = c.output();
    assert!(!o.status.success(), "a second {unit} was started");
    one_line_error("unit in use", &text);
    assert!(text.contains(&unit), "{text}");
    assert!(!c.root.join(&c.id).exists());
    assert_eq!(
        unit_property(&unit, "ActiveState"),
        "active",
        "the other scope was touched"
    );
    let _ = other.kill();
    let _ = other.wait();
    let _ = systemctl(&["stop", &unit]);
}

#[test]
fn kill_all_pause_and_events_in_a_scope() {
    if !on() {
        return;
    }
    let c = Ctr::new("sd-ops", &["sh", "-c", "sleep 100 & sleep 100"]);
    started(&c);
    c.op_ok(&["pause", &c.id]);
    assert_eq!(c.status(), "paused");
    assert_eq!(read(&scope_dir(&c).join("cgroup.freeze")), "1");
    c.op_ok(&["resume", &c.id]);
    assert_eq!(c.status(), "running");
    let stats: serde_json::Value =
        serde_json::from_str(&c.op_ok(&["events", "--stats", &c.id])).unwrap();
    assert!(
        stats["data"]["pids"]["current"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    c.op_ok(&["kill", "--all", &c.id, "KILL"]);
    c.wait_status("stopped");
    c.op_ok(&["delete", &c.id]);
    c.assert_no_leftovers();
}

/// ocirun talks to systemd from one thread and keeps no bus connection in
/// the container: while a foreground `run` waits for its container, the
/// runtime is a single thread and the container's process has only its
/// stdio open.
#[test]
fn no_thread_and_no_bus_socket_outlive_the_unit_start() {
    if !on() {
        return;
    }
    if runtime_name() != "ocirun" {
        eprintln!(
            "skipped for {}: Go runtimes are multi-threaded",
            runtime_name()
        );
        return;
    }
    let c = Ctr::new("sd-threads", &["sleep", "100"]);
    c.write_config();
    let mut run = c
        .cmd()
        .args(["run", "--bundle"])
        .arg(c.bundle())
        .arg(&c.id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if c.op(&["state", &c.id]).status.success() && c.status() == "running" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(c.status(), "running");
    let tasks = fs::read_dir(format!("/proc/{}/task", run.id()))
        .unwrap()
        .count();
    let fds: Vec<String> = fs::read_dir(format!("/proc/{}/fd", c.pid()))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    c.op_ok(&["kill", &c.id, "KILL"]);
    let _ = run.wait();
    assert_eq!(tasks, 1, "ocirun run has {tasks} threads");
    let mut fds = fds;
    fds.sort();
    assert_eq!(
        fds,
        ["0", "1", "2"],
        "the container's process has more than stdio open"
    );
    c.assert_no_leftovers();
}

/// Rootless: the scope comes from the user's own manager (user@UID.service,
/// its bus at /run/user/UID/bus), in its user.slice, with the limits in
/// both views; delete stops it.
#[test]
fn rootless_scope_in_the_users_manager() {
    if !on() {
        return;
    }
    let user = "rtuser";
    let id_of = |flag: &str| -> Option<u32> {
        let o = Command::new("id").args([flag, user]).output().ok()?;
        String::from_utf8_lossy(&o.stdout).trim().parse().ok()
    };
    if id_of("-u").is_none() {
        let st = Command::new("useradd")
            .args(["--no-create-home", "--shell", "/usr/sbin/nologin", user])
            .status()
            .unwrap();
        assert!(st.success(), "useradd {user}");
    }
    let (uid, gid) = (id_of("-u").unwrap(), id_of("-g").unwrap());
    let o = systemctl(&["start", &format!("user@{uid}.service")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run_dir = format!("/run/user/{uid}");
    let user_cmd = |args: &[&str]| -> Command {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--init-groups",
            "--",
        ])
        .args(args)
        .env("XDG_RUNTIME_DIR", &run_dir)
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={run_dir}/bus"),
        )
        .stdin(std::process::Stdio::null());
        c
    };
    let as_user = |args: &[&str]| user_cmd(args).output().unwrap();
    let c = Ctr::new("sd-rootless", &["sleep", "100"]);
    let rt = runtime();
    let rt = rt.to_str().unwrap();
    let bundle = c.dir.join("rl");
    fs::create_dir_all(&bundle).unwrap();
    fs::rename(c.rootfs(), bundle.join("rootfs")).unwrap();
    let st = Command::new("chown")
        .args(["-R", &format!("{uid}:{gid}")])
        .arg(&c.dir)
        .status()
        .unwrap();
    assert!(st.success());
    let b = bundle.to_str().unwrap();
    let o = as_user(&[rt, "spec", "--rootless", "--bundle", b]);
    assert!(
        o.status.success(),
        "spec: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let cfg_path = bundle.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&fs::read(&cfg_path).unwrap()).unwrap();
    cfg["process"]["terminal"] = json!(false);
    cfg["process"]["args"] = json!(["sleep", "100"]);
    cfg["linux"]["cgroupsPath"] = json!(format!(":rt:{}", c.id));
    cfg["linux"]["resources"] = json!({"pids": {"limit": 20}, "memory": {"limit": 67108864}});
    fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    let root = c.dir.join("rl-state");
    let root = root.to_str().unwrap();
    let base = [rt, "--systemd-cgroup", "--rootless", "true", "--root", root];
    let op = |args: &[&str]| {
        let mut a = base.to_vec();
        a.extend(args);
        as_user(&a)
    };
    // The container keeps its stdio: not pipes a caller would wait on.
    let mut a = base.to_vec();
    a.extend(["run", "-d", "--bundle", b, &c.id]);
    let err = c.dir.join("run.err");
    let st = user_cmd(&a)
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&err).unwrap())
        .status()
        .unwrap();
    assert!(
        st.success(),
        "run: {}",
        fs::read_to_string(&err).unwrap_or_default()
    );
    let unit = format!("rt-{}.scope", c.id);
    let dir = PathBuf::from(format!(
        "/sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service/user.slice/{unit}"
    ));
    let show = |prop: &str| {
        let o = as_user(&["systemctl", "--user", "show", "-p", prop, "--value", &unit]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let active = show("ActiveState");
    let tasks = show("TasksMax");
    let pids = fs::read_to_string(dir.join("pids.max")).unwrap_or_default();
    let o = op(&["delete", "--force", &c.id]);
    let gone = show("LoadState");
    let _ = systemctl(&["stop", &format!("user@{uid}.service")]);
    assert_eq!(active, "active", "{unit} in the user's manager");
    assert_eq!(tasks, "20");
    assert_eq!(pids.trim(), "20", "{}", dir.display());
    assert!(
        o.status.success(),
        "delete: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(gone, "not-found");
    assert!(!dir.exists());
}

/// Without a bus daemon (DBUS_SYSTEM_BUS_ADDRESS pointing nowhere), root
/// reaches systemd on its private socket, as go-systemd does; with that
/// socket hidden too there is no bus: one line, nothing left.
#[test]
fn no_bus_daemon_then_no_bus_at_all() {
    if !on() {
        return;
    }
    let nowhere = "unix:path=/nonexistent/system_bus_socket";
    let c = Ctr::new("sd-private", &["sleep", "100"]);
    c.write_config();
    let o = c
        .cmd()
        .env("DBUS_SYSTEM_BUS_ADDRESS", nowhere)
        .args(["run", "-d", "--bundle"])
        .arg(c.bundle())
        .arg(&c.id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(c.out_file()).unwrap())
        .status()
        .unwrap();
    assert!(
        o.success(),
        "run through systemd's private socket: {}",
        c.output()
    );
    assert_eq!(unit_property(&c.unit().unwrap(), "ActiveState"), "active");
    let o = c
        .cmd()
        .env("DBUS_SYSTEM_BUS_ADDRESS", nowhere)
        .args(["delete", "--force", &c.id])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    c.assert_no_leftovers();

    let c = Ctr::new("sd-nobus", &["true"]);
    c.write_config();
    let mut cmd = c.cmd();
    let argv: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    cmd = Command::new("unshare");
    cmd.args([
        "-m",
        "sh",
        "-c",
        "mount --bind /dev/null /run/systemd/private && exec \"$@\"",
        "sh",
    ])
    .args(&argv)
    .args(["create", "--bundle"])
    .arg(c.bundle())
    .arg(&c.id)
    .env("DBUS_SYSTEM_BUS_ADDRESS", nowhere);
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "created without a bus");
    one_line_error("no bus", &err);
    c.assert_no_leftovers();
}
