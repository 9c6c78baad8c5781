//! What the tests with real clients (podman, Docker) share: the two runtimes
//! every case runs against, a table of what each returned, and the cleanup of
//! what a client leaves in a temp dir and in the cgroup hierarchies.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// One runtime under test: its name (the client's `--runtime` name) and path.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub name: &'static str,
    pub path: PathBuf,
}

/// ocirun (RUNTIME, else the release binary scripts/test builds, else this
/// build's binary) and Debian's runc, in that order.
pub fn runtimes() -> Vec<Runtime> {
    let release = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/x86_64-unknown-linux-gnu/release/ocirun");
    let ocirun = match std::env::var_os("RUNTIME") {
        Some(p) => PathBuf::from(p),
        None if release.exists() => release,
        None => PathBuf::from(super::bin()),
    };
    vec![
        Runtime {
            name: "ocirun",
            path: ocirun,
        },
        Runtime {
            name: "runc",
            path: PathBuf::from("/usr/sbin/runc"),
        },
    ]
}

/// `<dir>/bin/<name>`: a script that runs the runtime with its state under
/// `<dir>/state-<name>`. A client's own `--runtime-flag` does not reach the
/// cleanup it runs when a container exits, so the root is given here.
///
/// Written once: a client's cleanup process may exec it at any moment, and
/// an exec that meets the script being rewritten in place fails (ETXTBSY),
/// so the runtime's `delete` never runs and the container is left behind.
/// The first write goes to a temporary file renamed into place.
pub fn wrapper(dir: &Path, rt: &Runtime) -> PathBuf {
    let bin = dir.join("bin");
    let path = bin.join(rt.name);
    if path.exists() {
        return path;
    }
    let state = dir.join(format!("state-{}", rt.name));
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let tmp = bin.join(format!(".{}.tmp", rt.name));
    std::fs::write(
        &tmp,
        format!(
            "#!/bin/sh\nexec {} --root {} \"$@\"\n",
            rt.path.display(),
            state.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// The containers whose state the runtime still has under `<dir>/state-<name>`.
pub fn runtime_state(dir: &Path, rt: &Runtime) -> Vec<String> {
    containers_in(&dir.join(format!("state-{}", rt.name)))
}

/// The container state dirs under a runtime's state root.
pub fn containers_in(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                // ocirun's own cache in its root, not a container.
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `cmd` with stdin closed, killed after `secs` (coreutils timeout).
pub fn run_for(secs: u32, cmd: &mut Command) -> Output {
    let mut t = Command::new("timeout");
    t.args(["-k", "5", &secs.to_string()])
        .arg(cmd.get_program());
    t.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => t.env(k, v),
            None => t.env_remove(k),
        };
    }
    t.stdin(Stdio::null()).output().unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

/// What each case returned with each runtime, printed as a table and
/// checked at the end: every row must match its expectation.
#[derive(Default)]
pub struct Table {
    rows: Vec<(String, &'static str, String, String, String)>,
}

impl Table {
    /// Records `got` for `case` on `rt`; `detail` (the client's stderr) is
    /// shown for a mismatch.
    pub fn record(&mut self, case: &str, rt: &Runtime, want: &str, got: &str, detail: &str) {
        self.rows.push((
            case.to_string(),
            rt.name,
            want.to_string(),
            got.to_string(),
            detail.to_string(),
        ));
    }

    /// Prints the table and panics listing the mismatches, if any.
    pub fn check(&self, title: &str) {
        let mut s = format!(
            "{title}\n{:<52} {:<7} {:<10} {:<10}\n",
            "case", "runtime", "want", "got"
        );
        let mut bad = String::new();
        for (case, rt, want, got, detail) in &self.rows {
            let mark = if want == got { "" } else { "  <-- MISMATCH" };
            let _ = writeln!(s, "{case:<52} {rt:<7} {want:<10} {got:<10}{mark}");
            if want != got {
                let _ = writeln!(bad, "{case} on {rt}: want {want}, got {got}: {detail}");
            }
        }
        eprintln!("{s}");
        assert!(bad.is_empty(), "{s}\nmismatches:\n{bad}");
    }
}

/// The cgroup directories `/sys/fs/cgroup/<hierarchy>/<parent>` (v1 and the
/// hybrid unified tree) or `/sys/fs/cgroup/<parent>` (v2) that exist.
pub fn cgroup_dirs(parent: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut out = Vec::new();
    if root.join("cgroup.controllers").exists() {
        out.push(root.join(parent));
    } else {
        for h in std::fs::read_dir(root).into_iter().flatten().flatten() {
            out.push(h.path().join(parent));
        }
    }
    out.retain(|d| d.is_dir());
    out
}

/// Every cgroup below `parent` (not `parent` itself), deepest first.
pub fn cgroups_below(parent: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(&e.path(), out);
                out.push(e.path());
            }
        }
    }
    let mut out = Vec::new();
    for d in cgroup_dirs(parent) {
        walk(&d, &mut out);
    }
    out
}

/// The pids in any cgroup at or below `parent`.
pub fn cgroup_pids(parent: &str) -> Vec<i32> {
    let mut dirs = cgroup_dirs(parent);
    dirs.extend(cgroups_below(parent));
    let mut pids: Vec<i32> = dirs
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|s| {
            s.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<_>>()
        })
        .collect();
    pids.sort();
    pids.dedup();
    pids
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_below(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy().into_owned();
    let mut m: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|p| p == &d || p.starts_with(&format!("{d}/")))
        .collect();
    m.sort_by_key(|p| std::cmp::Reverse(p.len()));
    m
}

/// Processes whose command line names `dir` (a client's daemons and
/// monitors: dockerd, containerd, shims, conmon).
pub fn processes_naming(dir: &Path) -> Vec<(i32, String)> {
    let d = dir.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(&d) {
            out.push((pid, cmd));
        }
    }
    out
}

/// What a client left behind: runtime state under `dir`, cgroups below
/// `parent`, processes in them or naming `dir` other than `keep`, mounts
/// below `dir`. Empty when all is clean.
pub fn leftovers(dir: &Path, parent: &str, keep: &[i32]) -> Vec<String> {
    let mut out = Vec::new();
    for rt in runtimes() {
        for id in runtime_state(dir, &rt) {
            out.push(format!("{} state: {id}", rt.name));
        }
    }
    for c in cgroups_below(parent) {
        // conmon's own cgroup (podman's cgroupfs manager) is shared by
        // every container under the parent; it is the test's to remove.
        if c.file_name().is_some_and(|n| n == "conmon") {
            continue;
        }
        out.push(format!("cgroup {}", c.display()));
    }
    for p in cgroup_pids(parent) {
        if !keep.contains(&p) {
            out.push(format!("process {p} in a cgroup below {parent}"));
        }
    }
    for (p, cmd) in processes_naming(dir) {
        if !keep.contains(&p) {
            out.push(format!("process {p}: {cmd}"));
        }
    }
    for m in mounts_below(dir) {
        out.push(format!("mount {m}"));
    }
    out
}

/// Best-effort removal of everything `leftovers` reports, then of `dir`
/// and the cgroup `parent`: thaws and kills the cgroups' processes and
/// those naming `dir`, deletes runtime state, unmounts, removes.
pub fn clean_up(dir: &Path, parent: &str) {
    for _ in 0..3 {
        for d in cgroup_dirs(parent).into_iter().chain(cgroups_below(parent)) {
            let _ = std::fs::write(d.join("freezer.state"), "THAWED");
            let _ = std::fs::write(d.join("cgroup.freeze"), "0");
        }
        let mut pids = cgroup_pids(parent);
        pids.extend(processes_naming(dir).into_iter().map(|(p, _)| p));
        for p in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if pids.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for rt in runtimes() {
        for id in runtime_state(dir, &rt) {
            let _ = Command::new(&rt.path)
                .arg("--root")
                .arg(dir.join(format!("state-{}", rt.name)))
                .args(["delete", "--force", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    for m in mounts_below(dir) {
        let _ = Command::new("umount")
            .args(["-l", &m])
            .stderr(Stdio::null())
            .status();
    }
    for c in cgroups_below(parent).into_iter().chain(cgroup_dirs(parent)) {
        let _ = std::fs::remove_dir(c);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Reads `master` until `marker` shows up (20 s at most).
pub fn expect(master: &mut std::fs::File, seen: &mut String, marker: &str) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut buf = [0u8; 1024];
    while !seen.contains(marker) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(master),
            PollFlags::POLLIN,
        )];
        let ms = PollTimeout::try_from(left.as_millis().min(500) as i32).unwrap();
        if poll(&mut fds, ms).unwrap_or(0) == 0 {
            continue;
        }
        match std::io::Read::read(master, &mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    true
}

/// Reads what is there without blocking (poll with a zero timeout first).
pub fn nonblocking_read(f: &std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(f), PollFlags::POLLIN)];
    if poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) == 0 {
        return Ok(0);
    }
    let mut r = f;
    std::io::Read::read(&mut r, buf)
}

/// The script every `run -it` case runs on the test's terminal.
pub const INTERACTIVE_SCRIPT: &str = "[ -t 0 ] && echo is-a-tty; read x; echo got-$x; exit 7";

/// Runs `cmd` (a client's `run -it ... INTERACTIVE_SCRIPT`) on a pty the
/// test owns, types `hello`, and records in `t` whether stdin was a
/// terminal, whether the input arrived, and the exit code (7).
pub fn check_interactive(what: &str, mut cmd: Command, rt: &Runtime, t: &mut Table) {
    use std::os::fd::OwnedFd;
    let pty = nix::pty::openpty(None, None).unwrap();
    let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
    let mut child = cmd
        .arg(INTERACTIVE_SCRIPT)
        .stdin(io(&pty.slave))
        .stdout(io(&pty.slave))
        .stderr(io(&pty.slave))
        .spawn()
        .unwrap();
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let mut seen = String::new();
    let tty = expect(&mut master, &mut seen, "is-a-tty");
    if tty {
        std::io::Write::write_all(&mut master, b"hello\r").unwrap();
    }
    let echoed = tty && expect(&mut master, &mut seen, "got-hello");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        // Keep the terminal drained so the client never blocks writing it.
        let mut buf = [0u8; 1024];
        if let Some(st) = child.try_wait().unwrap() {
            break st.code().map_or("signal".to_string(), |c| c.to_string());
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break "timeout".to_string();
        }
        if let Ok(n) = nonblocking_read(&master, &mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    t.record(
        &format!("{what}: stdin is a terminal"),
        rt,
        "true",
        &tty.to_string(),
        &seen,
    );
    t.record(
        "  input typed reaches the container",
        rt,
        "true",
        &echoed.to_string(),
        &seen,
    );
    t.record("  exit code", rt, "7", &status, &seen);
}
