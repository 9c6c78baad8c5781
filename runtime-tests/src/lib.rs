//! Helpers for the conformance suite: busybox bundles generated in code, a
//! driver for any runtime binary's runc-style CLI, and leftover checks.
//!
//! `RUNTIME=/path/to/runtime cargo test -p runtime-tests` runs the suite
//! against that binary (default: the workspace's release, then debug, ocirun).
//!
//! `RUNTIME_ROOTLESS=1` is the rootless mode: the tests still run as root,
//! but every `Ctr` runs the runtime as the ordinary user `rtuser` (made if
//! missing, with ranges in /etc/subuid and /etc/subgid), in a bundle that
//! user owns, with a user namespace mapping rtuser to root and 65536
//! subordinate ids after it (written by newuidmap/newgidmap). Tests that
//! need privilege say so with `skip_rootless` and skip.

#[allow(unsafe_code)]
pub mod sys;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};

/// The runtime under test.
pub fn runtime() -> PathBuf {
    if let Ok(r) = std::env::var("RUNTIME") {
        return PathBuf::from(r);
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for p in [
        "target/x86_64-unknown-linux-gnu/release/ocirun",
        "target/x86_64-unknown-linux-gnu/debug/ocirun",
    ] {
        let c = ws.join(p);
        if c.exists() {
            return c;
        }
    }
    panic!("no runtime: set RUNTIME or build ocirun first");
}

/// The runtime's name (file name), e.g. "ocirun" or "runc".
pub fn runtime_name() -> String {
    runtime()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// This test run's own directory under the temp dir: bundles, rootfs
/// copies and state roots go below it.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // The pid alone repeats across runs: a dir left by an earlier run
        // (its rootfs template given to rtuser by the rootless mode) would
        // be taken over. A new dir each time, or the run fails.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let d = std::env::temp_dir().join(format!("runtime-tests-{}-{nanos}", std::process::id()));
        fs::create_dir(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
        d
    })
}

/// The ordinary user the rootless tests run the runtime as.
pub const TEST_USER: &str = "rtuser";

/// Whether the suite runs in rootless mode (`RUNTIME_ROOTLESS=1`).
pub fn rootless() -> bool {
    std::env::var("RUNTIME_ROOTLESS").is_ok_and(|v| v == "1")
}

/// In rootless mode, says why a test cannot run there and returns true
/// (the test then returns early).
/// With `RUNTIME_TESTS_SKIPS=FILE`, each skip is also a line there:
/// `TEST: REASON`.
pub fn skip_rootless(why: &str) -> bool {
    if rootless() {
        eprintln!("skipped in rootless mode: {why}");
        if let Some(file) = std::env::var_os("RUNTIME_TESTS_SKIPS") {
            use std::io::Write;
            let test = std::thread::current().name().unwrap_or("?").to_string();
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .unwrap();
            writeln!(f, "{test}: {why}").unwrap();
        }
    }
    rootless()
}

/// rtuser's uid and gid, creating the user (and its subordinate id ranges,
/// where useradd did not) the first time.
pub fn test_user() -> (u32, u32) {
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    *IDS.get_or_init(|| {
        let id = |flag: &str| {
            Command::new("id")
                .args([flag, TEST_USER])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().parse().unwrap())
        };
        if id("-u").is_none() {
            let st = Command::new("useradd")
                .args([
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    TEST_USER,
                ])
                .status()
                .unwrap();
            assert!(st.success(), "useradd {TEST_USER}");
        }
        for (file, flag) in [
            ("/etc/subuid", "--add-subuids"),
            ("/etc/subgid", "--add-subgids"),
        ] {
            let text = fs::read_to_string(file).unwrap_or_default();
            if !text
                .lines()
                .any(|l| l.starts_with(&format!("{TEST_USER}:")))
            {
                let st = Command::new("usermod")
                    .args([flag, "100000-165535", TEST_USER])
                    .status()
                    .unwrap();
                assert!(st.success(), "usermod {flag} {TEST_USER}");
            }
        }
        (id("-u").unwrap(), id("-g").unwrap())
    })
}

/// rtuser's first subordinate uid and gid range starts.
pub fn test_user_subids() -> (u32, u32) {
    let (uid, _) = test_user();
    let start = |file: &str| {
        fs::read_to_string(file)
            .unwrap()
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() == 3 && (f[0] == TEST_USER || f[0] == uid.to_string()))
                    .then(|| f[1].parse().unwrap())
            })
            .unwrap_or_else(|| panic!("{TEST_USER} has no range in {file}"))
    };
    (start("/etc/subuid"), start("/etc/subgid"))
}

/// Gives `path` (recursively) to rtuser.
pub fn give_to_test_user(path: &Path) {
    let (uid, gid) = test_user();
    let st = Command::new("chown")
        .args(["-R", &format!("{uid}:{gid}")])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success(), "chown -R {}", path.display());
}

/// A command that runs `prog` as rtuser (no supplementary groups).
pub fn as_test_user(prog: impl AsRef<std::ffi::OsStr>) -> Command {
    let (uid, gid) = test_user();
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={uid}"),
        &format!("--regid={gid}"),
        "--clear-groups",
        "--",
    ])
    .arg(prog);
    c
}

/// A shared busybox rootfs template, built once per test run.
fn rootfs_template() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = scratch().join("rootfs-template");
        make_busybox_rootfs(&d);
        if rootless() {
            give_to_test_user(&d);
        }
        d
    })
}

/// Builds a minimal busybox root filesystem from the host's static busybox.
pub fn make_busybox_rootfs(dir: &Path) {
    let bb = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox not found: install busybox-static");
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "home/user",
    ] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::copy(bb, dir.join("bin/busybox")).unwrap();
    // The host's copy lists the applets: the new one may still be open for
    // writing in a child another test thread forked meanwhile (ETXTBSY).
    let list = Command::new(bb).arg("--list-full").output().unwrap();
    for app in String::from_utf8_lossy(&list.stdout).lines() {
        let p = dir.join(app);
        if !p.exists() {
            let _ = symlink("/bin/busybox", p);
        }
    }
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
    )
    .unwrap();
    fs::write(dir.join("etc/group"), "root:x:0:\ntty:x:5:\nuser:x:1000:\n").unwrap();
}

fn nix_chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One test's container: a bundle, a state root, and an id, all unique.
pub struct Ctr {
    pub id: String,
    pub dir: PathBuf,
    pub root: PathBuf,
    pub config: Value,
}

pub const CAPS: &[&str] = &["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

impl Ctr {
    /// A container running `args` in a fresh busybox bundle.
    pub fn new(name: &str, args: &[&str]) -> Ctr {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("rt-{}-{name}-{n}", std::process::id());
        let dir = scratch().join(&id);
        fs::create_dir_all(&dir).unwrap();
        copy_tree(rootfs_template(), &dir.join("rootfs"));
        if rootless() {
            let (uid, gid) = test_user();
            nix_chown(&dir, uid, gid);
        }
        let root = dir.join("state");
        let config = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
                "cwd": "/",
                "capabilities": {"bounding": CAPS, "effective": CAPS, "permitted": CAPS},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": false},
            "hostname": "rt",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
            ],
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
                "cgroupsPath": if systemd() { format!("system.slice:rt:{id}") } else { format!("/{id}") },
                "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
            }
        });
        let mut c = Ctr {
            id,
            dir,
            root,
            config,
        };
        if rootless() {
            c.make_rootless();
        }
        c
    }

    /// The rootless mode's config: a user namespace mapping rtuser to root
    /// and its subordinate ids to 1..65536.
    fn make_rootless(&mut self) {
        let (uid, gid) = test_user();
        let (subuid, subgid) = test_user_subids();
        let maps = |own: u32, sub: u32| {
            json!([{"containerID": 0, "hostID": own, "size": 1},
                   {"containerID": 1, "hostID": sub, "size": 65536}])
        };
        let linux = &mut self.config["linux"];
        linux["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        linux["uidMappings"] = maps(uid, subuid);
        linux["gidMappings"] = maps(gid, subgid);
        // As `spec --rootless` writes: no cgroupsPath (runc refuses one it
        // cannot create; ocirun leaves out what it cannot write).
        linux.as_object_mut().unwrap().remove("cgroupsPath");
    }

    pub fn bundle(&self) -> PathBuf {
        self.dir.clone()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn write_config(&self) {
        fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// The runtime command with `--root` set (and `--systemd-cgroup`
    /// under `RUNTIME_SYSTEMD=1`, on every command, as containerd does).
    pub fn cmd(&self) -> Command {
        let mut c = if rootless() {
            as_test_user(runtime())
        } else {
            Command::new(runtime())
        };
        c.arg("--root").arg(&self.root);
        if systemd() {
            c.arg("--systemd-cgroup");
        }
        c
    }

    /// The container's cgroup below the cgroup root with the default
    /// `cgroupsPath`: `<id>`, or its scope in system.slice with systemd.
    pub fn cgroup_rel(&self) -> String {
        match self.unit() {
            Some(u) => format!("system.slice/{u}"),
            None => self.id.clone(),
        }
    }

    /// The systemd unit of the default `cgroupsPath` (systemd driver only).
    pub fn unit(&self) -> Option<String> {
        systemd().then(|| format!("rt-{}.scope", self.id))
    }

    /// `run` in the foreground, capturing output.
    pub fn run(&self) -> Output {
        self.write_config();
        self.cmd()
            .args(["run", "--bundle"])
            .arg(self.bundle())
            .arg(&self.id)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `run` that must succeed; returns stdout.
    pub fn run_ok(&self) -> String {
        let o = self.run();
        assert!(
            o.status.success(),
            "run failed: {:?}\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The file the container's stdout/stderr go to after `create`.
    pub fn out_file(&self) -> PathBuf {
        self.dir.join("out.txt")
    }

    /// `create` with the container's stdio going to `out_file()`.
    pub fn create(&self) -> Output {
        self.create_with(&[])
    }

    pub fn create_with(&self, extra: &[&str]) -> Output {
        self.write_config();
        let out = fs::File::create(self.out_file()).unwrap();
        let err = out.try_clone().unwrap();
        let child = self
            .cmd()
            .args(["create", "--bundle"])
            .arg(self.bundle())
            .args(extra)
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn create_ok(&self) {
        let o = self.create();
        assert!(
            o.status.success(),
            "create failed: {}",
            fs::read_to_string(self.out_file()).unwrap_or_default()
        );
    }

    pub fn op(&self, args: &[&str]) -> Output {
        self.cmd().args(args).stdin(Stdio::null()).output().unwrap()
    }

    pub fn op_ok(&self, args: &[&str]) -> String {
        let o = self.op(args);
        assert!(
            o.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn state(&self) -> Value {
        let s = self.op_ok(&["state", &self.id]);
        serde_json::from_str(&s).unwrap()
    }

    pub fn status(&self) -> String {
        self.state()["status"].as_str().unwrap().to_string()
    }

    pub fn pid(&self) -> i32 {
        self.state()["pid"].as_i64().unwrap() as i32
    }

    /// Waits (bounded) for the container to reach `want`.
    pub fn wait_status(&self, want: &str) {
        for _ in 0..200 {
            if self.status() == want {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!(
            "container {} never reached status {want} (now {})",
            self.id,
            self.status()
        );
    }

    pub fn output(&self) -> String {
        fs::read_to_string(self.out_file()).unwrap_or_default()
    }

    /// Asserts the runtime left nothing behind for this container.
    pub fn assert_no_leftovers(&self) {
        assert!(
            !self.root.join(&self.id).exists(),
            "state dir {} left behind",
            self.root.join(&self.id).display()
        );
        for c in cgroup_dirs(&format!("/{}", self.cgroup_rel())) {
            assert!(!c.exists(), "cgroup {} left behind", c.display());
        }
        if let Some(u) = self.unit() {
            assert_eq!(
                unit_property(&u, "LoadState"),
                "not-found",
                "unit {u} left behind"
            );
        }
        let procs = processes_in_cgroup(&self.id);
        assert!(procs.is_empty(), "processes left behind: {procs:?}");
        // The host's own devices are never the container's to change.
        let null = fs::metadata("/dev/null").expect("stat the host's /dev/null");
        assert_eq!(
            null.permissions().mode() & 0o7777,
            0o666,
            "the host's /dev/null changed mode"
        );
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let _ = self
            .cmd()
            .args(["delete", "--force", &self.id])
            .stderr(Stdio::null())
            .output();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `RUNTIME_SYSTEMD=1`: containers use the systemd cgroup driver
/// (`--systemd-cgroup`, `cgroupsPath` `system.slice:rt:<id>`).
pub fn systemd() -> bool {
    std::env::var("RUNTIME_SYSTEMD").is_ok_and(|v| v == "1")
}

/// A property of a systemd unit as `systemctl show -p NAME --value` prints it.
pub fn unit_property(unit: &str, name: &str) -> String {
    let o = Command::new("systemctl")
        .args(["show", "-p", name, "--value", unit])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "systemctl show {unit}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Every place a cgroup path can exist on this host (v1 controllers and v2).
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            out.push(e.path().join(rel));
        }
    }
    out.push(Path::new("/sys/fs/cgroup").join(rel));
    out
}

/// Live (not zombie) host pids for which `keep(/proc/<pid>)` holds. A
/// zombie has already exited: reaping it is its parent's business.
pub fn live_processes(keep: impl Fn(&Path) -> bool) -> Vec<i32> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        if stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
        {
            continue;
        }
        if keep(&e.path()) {
            v.push(pid);
        }
    }
    v
}

/// Live host pids whose /proc/<pid>/cgroup mentions `needle`.
pub fn processes_in_cgroup(needle: &str) -> Vec<i32> {
    live_processes(|proc| {
        fs::read_to_string(proc.join("cgroup")).is_ok_and(|cg| cg.contains(needle))
    })
}

/// Inode of a namespace link of a process, e.g. `ns_inode(pid, "net")`.
pub fn ns_inode(pid: &str, ns: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

pub fn mount_count() -> usize {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count()
}

/// A unix socket listening at `path` for the runtime to connect to (a
/// console socket, a seccomp listener): in rootless mode given to rtuser.
pub fn listen(path: &Path) -> std::os::unix::net::UnixListener {
    let l = std::os::unix::net::UnixListener::bind(path)
        .unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
    if rootless() {
        let (uid, gid) = test_user();
        nix_chown(path, uid, gid);
    }
    l
}
