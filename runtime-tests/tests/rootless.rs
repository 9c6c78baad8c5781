//! Rootless: the runtime run by an ordinary user (`rtuser`, made here if
//! missing) with `--rootless true` and a state root of its own, on a config
//! from the runtime's own `spec --rootless` (a user namespace mapping only
//! the user's uid and gid, no network namespace, no resources).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use runtime_tests::{live_processes, make_busybox_rootfs, runtime, runtime_name};
use serde_json::{Value, json};

/// rtuser's uid and gid (made, with subordinate ranges, if missing).
fn user() -> (u32, u32) {
    runtime_tests::test_user()
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One rootless container: a bundle and a state root owned by rtuser.
struct Rl {
    id: String,
    dir: PathBuf,
    root: PathBuf,
    /// A number unique to this container, in its process's command line.
    mark: u32,
    config: Value,
    /// A delegated cgroup v2 leaf the runtime is started in, if any.
    start_in: Option<PathBuf>,
}

impl Rl {
    fn new(name: &str) -> Rl {
        let (uid, gid) = user();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("rl-{}-{name}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&id);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("bundle")).unwrap();
        make_busybox_rootfs(&dir.join("bundle/rootfs"));
        let st = Command::new("chown")
            .args(["-R", &format!("{uid}:{gid}")])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success());
        let mut c = Rl {
            id,
            root: dir.join("state"),
            dir,
            mark: 900_000 + std::process::id() % 1000 * 100 + n,
            config: Value::Null,
            start_in: None,
        };
        let o = c.as_user(&["spec", "--rootless", "--bundle"], Some(&c.bundle()));
        assert!(o.status.success(), "spec --rootless: {}", text(&o.stderr));
        let path = c.bundle().join("config.json");
        c.config = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        c.config["process"]["terminal"] = json!(false);
        c.set_args(&["sleep", &c.mark.to_string()]);
        c
    }

    fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }

    fn set_args(&mut self, args: &[&str]) {
        self.config["process"]["args"] = json!(args);
    }

    fn write_config(&self) {
        // Rewritten in place: the file stays rtuser's.
        fs::write(
            self.bundle().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// The runtime as rtuser: `setpriv` to its ids, `--rootless true` and
    /// its own `--root`; `args`, then `path` if given.
    fn cmd(&self, args: &[&str], path: Option<&Path>) -> Command {
        let (uid, gid) = user();
        let mut c = match &self.start_in {
            // Moved there (as root) first, then rtuser: a delegated subtree
            // is where the runtime may move the container's processes.
            Some(cg) => {
                let mut c = Command::new("sh");
                c.args(["-c", "echo $$ > \"$0\" && exec \"$@\""])
                    .arg(cg.join("cgroup.procs"))
                    .arg("setpriv");
                c
            }
            None => Command::new("setpriv"),
        };
        c.args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--init-groups",
            "--",
        ])
        .arg(runtime())
        .args(["--rootless", "true", "--root"])
        .arg(&self.root)
        .args(args);
        if let Some(p) = path {
            c.arg(p);
        }
        c.env_remove("XDG_RUNTIME_DIR").stdin(Stdio::null());
        c
    }

    fn as_user(&self, args: &[&str], path: Option<&Path>) -> Output {
        self.cmd(args, path).output().unwrap()
    }

    fn op(&self, args: &[&str]) -> Output {
        let mut a = args.to_vec();
        a.push(&self.id);
        self.as_user(&a, None)
    }

    fn op_ok(&self, args: &[&str]) -> String {
        let o = self.op(args);
        assert!(
            o.status.success(),
            "{args:?} {} failed: {}",
            self.id,
            text(&o.stderr)
        );
        text(&o.stdout)
    }

    fn run(&self) -> Output {
        self.write_config();
        let b = self.bundle();
        let mut c = self.cmd(&["run", "--bundle"], Some(&b));
        c.arg(&self.id);
        c.output().unwrap()
    }

    fn create_ok(&self) {
        self.write_config();
        let b = self.bundle();
        let out = fs::File::create(self.dir.join("out.txt")).unwrap();
        let mut c = self.cmd(&["create", "--bundle"], Some(&b));
        c.arg(&self.id).stdout(out.try_clone().unwrap()).stderr(out);
        let st = c.status().unwrap();
        assert!(
            st.success(),
            "create failed: {}",
            fs::read_to_string(self.dir.join("out.txt")).unwrap_or_default()
        );
    }

    fn state(&self) -> Value {
        serde_json::from_str(&self.op_ok(&["state"])).unwrap()
    }

    fn status(&self) -> String {
        self.state()["status"].as_str().unwrap().to_string()
    }

    fn wait_status(&self, want: &str) {
        for _ in 0..200 {
            if self.status() == want {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("{} never reached {want} (now {})", self.id, self.status());
    }

    /// Live processes whose command line has this container's mark.
    fn processes(&self) -> Vec<i32> {
        let mark = self.mark.to_string();
        live_processes(|proc| {
            let cmd = fs::read(proc.join("cmdline")).unwrap_or_default();
            cmd.split(|b| *b == 0).any(|a| a == mark.as_bytes())
        })
    }

    fn assert_no_leftovers(&self) {
        let state = self.root.join(&self.id);
        assert!(!state.exists(), "state dir {} left", state.display());
        let p = self.processes();
        assert!(p.is_empty(), "processes left: {p:?}");
    }
}

impl Drop for Rl {
    fn drop(&mut self) {
        let _ = self.op(&["delete", "--force"]);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The one mapping line for rtuser's `id`: `0 <id> 1`.
fn one_map(id: u32) -> Vec<String> {
    ["0".to_string(), id.to_string(), "1".to_string()].to_vec()
}

fn fields(line: &str) -> Vec<String> {
    line.split_whitespace().map(String::from).collect()
}

#[test]
fn run_is_root_inside_with_own_ids_mapped() {
    let (uid, gid) = user();
    let mut c = Rl::new("run");
    c.set_args(&[
        "sh",
        "-c",
        "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map",
    ]);
    let o = c.run();
    assert!(o.status.success(), "run failed: {}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[0], "0");
    assert_eq!(lines[1], "0");
    assert_eq!(fields(lines[2]), one_map(uid));
    assert_eq!(fields(lines[3]), one_map(gid));
    c.assert_no_leftovers();
}

#[test]
fn lifecycle_create_start_state_kill_delete() {
    let (uid, _) = user();
    let c = Rl::new("life");
    c.create_ok();
    assert_eq!(c.status(), "created");
    let pid = c.state()["pid"].as_i64().unwrap();
    assert!(pid > 0);
    c.op_ok(&["start"]);
    c.wait_status("running");
    // On the host the process is rtuser's.
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(fields(uids)[1], uid.to_string(), "{uids}");
    assert!(!c.processes().is_empty());
    let o = c.as_user(&["kill", &c.id, "KILL"], None);
    assert!(o.status.success(), "kill: {}", text(&o.stderr));
    c.wait_status("stopped");
    c.op_ok(&["delete"]);
    c.assert_no_leftovers();
}

#[test]
fn exec_joins_the_user_namespace_as_root() {
    let (uid, _) = user();
    let c = Rl::new("exec");
    c.create_ok();
    c.op_ok(&["start"]);
    c.wait_status("running");
    let b = c.bundle();
    let mut cmd = c.cmd(&["exec"], None);
    cmd.arg(&c.id)
        .args(["sh", "-c", "id -u; cat /proc/self/uid_map"])
        .current_dir(&b);
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "exec failed: {}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"0"), "{out}");
    assert_eq!(fields(lines[1]), one_map(uid));
    c.op_ok(&["delete", "--force"]);
    c.assert_no_leftovers();
}

/// No cgroup of rtuser's own exists on the host: a limit cannot be set.
#[test]
fn limit_without_writable_cgroup_is_an_error() {
    let mut c = Rl::new("limit");
    c.config["linux"]["resources"] = json!({"memory": {"limit": 104_857_600}});
    c.set_args(&["sh", "-c", "true"]);
    let o = c.run();
    assert!(!o.status.success(), "run with a memory limit succeeded");
    let err = text(&o.stderr);
    assert!(err.contains("cgroup"), "{err}");
    // runc 1.1.5 on cgroup v2 does not name the limit: "rootless needs no
    // limits + no cgrouppath when no permission is granted for cgroups".
    if runtime_name() == "ocirun" {
        assert!(err.contains("memory"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    c.assert_no_leftovers();
}

#[test]
fn mapping_someone_elses_uid_is_an_error() {
    let (uid, _) = user();
    let mut c = Rl::new("otheruid");
    c.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": uid + 1, "size": 1}]);
    let o = c.run();
    assert!(!o.status.success(), "run mapping uid {} succeeded", uid + 1);
    let err = text(&o.stderr);
    assert!(!err.trim().is_empty());
    if runtime_name() == "ocirun" {
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains("uidMappings") && err.contains("not yours"),
            "{err}"
        );
    }
    c.assert_no_leftovers();
}

#[test]
fn no_user_namespace_is_an_error() {
    let mut c = Rl::new("nouserns");
    let ns = c.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "user");
    let o = c.run();
    assert!(!o.status.success(), "rootless run without a user namespace");
    if runtime_name() == "ocirun" {
        let err = text(&o.stderr);
        assert!(err.contains("user namespace"), "{err}");
    }
    c.assert_no_leftovers();
}

/// Root and 65536 subordinate ids, as podman maps them: written by
/// newuidmap/newgidmap; setgroups stays allowed, so additional gids work.
#[test]
fn subordinate_ranges_are_mapped_through_newuidmap() {
    let (uid, gid) = user();
    let (subuid, subgid) = runtime_tests::test_user_subids();
    let mut c = Rl::new("subids");
    let maps = |own: u32, sub: u32| {
        json!([{"containerID": 0, "hostID": own, "size": 1},
               {"containerID": 1, "hostID": sub, "size": 65536}])
    };
    c.config["linux"]["uidMappings"] = maps(uid, subuid);
    c.config["linux"]["gidMappings"] = maps(gid, subgid);
    c.config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [5]});
    c.set_args(&[
        "sh",
        "-c",
        "id -u; id -G; cat /proc/self/uid_map /proc/self/setgroups; stat -c %u /bin/busybox",
    ]);
    let o = c.run();
    if runtime_name() == "runc" {
        // runc 1.1.5: "cannot set any additional groups in a rootless container".
        assert!(!o.status.success());
        c.assert_no_leftovers();
        return;
    }
    assert!(o.status.success(), "run failed: {}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000", "{out}");
    assert_eq!(lines[1], "1000 5", "{out}");
    assert_eq!(fields(lines[2]), one_map(uid), "{out}");
    assert_eq!(
        fields(lines[3]),
        ["1", &subuid.to_string(), "65536"]
            .map(String::from)
            .to_vec(),
        "{out}"
    );
    assert_eq!(lines[4], "allow", "{out}");
    assert_eq!(
        lines[5], "0",
        "the rootfs, owned by rtuser, is root's inside: {out}"
    );
    c.assert_no_leftovers();
}

#[test]
fn a_range_outside_the_users_subordinate_ids_is_an_error() {
    let (uid, _) = user();
    let (subuid, _) = runtime_tests::test_user_subids();
    let mut c = Rl::new("outside");
    c.config["linux"]["uidMappings"] = json!([
        {"containerID": 0, "hostID": uid, "size": 1},
        {"containerID": 1, "hostID": subuid + 1, "size": 65536}
    ]);
    let o = c.run();
    assert!(!o.status.success(), "a mapping past the range was taken");
    let err = text(&o.stderr);
    if runtime_name() == "ocirun" {
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("hostID {}", subuid + 1)) && err.contains("/etc/subuid"),
            "{err}"
        );
    }
    c.assert_no_leftovers();
}

/// A cgroup v2 subtree delegated to rtuser as systemd delegates one
/// (`Delegate=yes`: the directory and its cgroup.procs, cgroup.threads and
/// cgroup.subtree_control are the user's), with the runtime started in a
/// leaf of it: limits are applied there, read back from inside the
/// container, updated, and pause/resume work. Only on a pure cgroup v2 host
/// (scripts/test-cgroup-v2 runs it in a VM).
#[test]
fn delegated_cgroup_v2_subtree_takes_limits() {
    let top = Path::new("/sys/fs/cgroup");
    if !top.join("cgroup.subtree_control").exists() {
        eprintln!("skipped: not a pure cgroup v2 host");
        return;
    }
    let (uid, gid) = user();
    let name = format!("rl-deleg-{}", std::process::id());
    let deleg = top.join(&name);
    fs::create_dir_all(deleg.join("runtime")).unwrap();
    let _cleanup = Deleg(deleg.clone());
    for f in [
        "",
        "cgroup.procs",
        "cgroup.threads",
        "cgroup.subtree_control",
    ] {
        std::os::unix::fs::chown(deleg.join(f), Some(uid), Some(gid)).unwrap();
        std::os::unix::fs::chown(deleg.join("runtime").join(f), Some(uid), Some(gid)).unwrap();
    }
    fs::write(deleg.join("cgroup.subtree_control"), "+memory +pids +cpu").unwrap();

    let mut c = Rl::new("deleg");
    c.start_in = Some(deleg.join("runtime"));
    let cg = format!("/{name}/ctr");
    c.config["linux"]["cgroupsPath"] = json!(cg);
    c.config["linux"]["resources"] = json!({
        "memory": {"limit": 104_857_600},
        "pids": {"limit": 50},
        "cpu": {"quota": 50_000, "period": 100_000}
    });
    // A cgroup namespace and a cgroup mount, as `spec --rootless` writes.
    let ns = c.config["linux"]["namespaces"].as_array_mut().unwrap();
    if !ns.iter().any(|n| n["type"] == "cgroup") {
        ns.push(json!({"type": "cgroup"}));
    }
    let mounts = c.config["mounts"].as_array_mut().unwrap();
    if !mounts.iter().any(|m| m["destination"] == "/sys/fs/cgroup") {
        mounts.push(json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}));
    }
    c.create_ok();
    let dir = deleg.join("ctr");
    let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_default();
    assert_eq!(read("memory.max").trim(), "104857600");
    assert_eq!(read("pids.max").trim(), "50");
    assert_eq!(read("cpu.max").trim(), "50000 100000");
    let pid = c.state()["pid"].as_i64().unwrap();
    assert!(
        read("cgroup.procs").lines().any(|l| l == pid.to_string()),
        "init not in {}",
        dir.display()
    );
    c.op_ok(&["start"]);
    c.wait_status("running");
    // From inside: its cgroup namespace's root is that cgroup.
    let b = c.bundle();
    let mut cmd = c.cmd(&["exec"], None);
    cmd.arg(&c.id)
        .args([
            "cat",
            "/sys/fs/cgroup/memory.max",
            "/sys/fs/cgroup/pids.max",
            "/proc/self/cgroup",
        ])
        .current_dir(&b);
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "exec failed: {}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "104857600\n50\n0::/\n");
    let o = c.as_user(&["update", "--pids-limit", "60", &c.id], None);
    assert!(o.status.success(), "update: {}", text(&o.stderr));
    assert_eq!(read("pids.max").trim(), "60");
    let ev = c.op_ok(&["events", "--stats"]);
    let ev: Value = serde_json::from_str(&ev).unwrap();
    assert_eq!(ev["data"]["pids"]["limit"], 60, "{ev}");
    assert!(
        ev["data"]["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{ev}"
    );
    c.op_ok(&["pause"]);
    assert_eq!(c.status(), "paused");
    assert!(
        read("cgroup.events").contains("frozen 1"),
        "{}",
        read("cgroup.events")
    );
    c.op_ok(&["resume"]);
    assert_eq!(c.status(), "running");
    c.op_ok(&["delete", "--force"]);
    assert!(!dir.exists(), "cgroup {} left", dir.display());
    c.assert_no_leftovers();
}

/// Removes the delegated subtree (after its containers are gone).
struct Deleg(PathBuf);

impl Drop for Deleg {
    fn drop(&mut self) {
        for d in ["ctr", "runtime", ""] {
            let _ = fs::remove_dir(self.0.join(d));
        }
    }
}

/// A bundle rtuser cannot read: one line naming it, nothing left behind.
#[test]
fn a_bundle_the_user_cannot_read_is_an_error() {
    let c = Rl::new("unreadable");
    c.write_config();
    let cfg = c.bundle().join("config.json");
    std::os::unix::fs::chown(&cfg, Some(0), Some(0)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&cfg, fs::Permissions::from_mode(0o600)).unwrap();
    let b = c.bundle();
    let mut cmd = c.cmd(&["run", "--bundle"], Some(&b));
    let o = cmd.arg(&c.id).output().unwrap();
    assert!(!o.status.success(), "run of an unreadable bundle succeeded");
    let err = text(&o.stderr);
    if runtime_name() == "ocirun" {
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains("config.json") && err.contains("EACCES"),
            "{err}"
        );
    }
    c.assert_no_leftovers();
}
