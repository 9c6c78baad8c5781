//! The container as a state machine: create, start, state, kill, delete,
//! run, list. Every operation on one id holds the state dir's lock.

pub mod control;
pub mod signal;
pub mod state;

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, mkfifo};
use serde::Serialize;

use crate::cgroups;
use crate::error::{Context, Error, Kind, Result};
use crate::process;
use crate::spec;
use state::{Op, Saved, StateDir, Status};

/// Options shared by the runtime commands (runc's global flags).
pub struct Global {
    pub root: PathBuf,
    pub systemd_cgroup: bool,
    /// Without privilege (`--rootless`): see `crate::rootless`.
    pub rootless: bool,
    /// Only writable cgroups are used: see `rootless::cgroups_rootless`.
    pub rootless_cgroups: bool,
}

pub struct CreateOpts {
    pub id: String,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
}

/// A container that has been created and whose lock we still hold.
struct Created {
    dir: StateDir,
    saved: Saved,
    /// The pty master to relay, for a foreground `run` with a terminal.
    master: Option<OwnedFd>,
}

pub fn create(g: &Global, o: &CreateOpts) -> Result<()> {
    create_locked(g, o, true).map(drop)
}

fn create_locked(g: &Global, o: &CreateOpts, detached: bool) -> Result<Created> {
    check_preserve_fds(o.preserve_fds, listen_fds())?;
    let mut bundle = spec::load(&o.bundle)?;
    if let Some(p) = bundle.spec.process_mut() {
        crate::security::drop_ungrantable(p);
    }
    // A bad profile or limit fails here, before anything of the container exists.
    let linux = bundle.spec.linux().as_ref().expect("validated");
    if let Some(r) = linux.resources() {
        cgroups::resources::validate(r)?;
        cgroups::devices::validate(r.devices().as_deref().unwrap_or_default())?;
    }
    if let Some(p) = bundle.spec.process() {
        crate::security::lsm::check(p)?;
    }
    let map_tools = if g.rootless {
        let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
        crate::rootless::check_spec(&bundle.spec, uid.as_raw(), gid.as_raw())?
    } else {
        Default::default()
    };
    let seccomp = compile_seccomp(linux, &g.root)?;
    let cg = if g.systemd_cgroup {
        // systemd makes (and delegates) the cgroup: checked and connected
        // here, before anything exists.
        cgroups::systemd_for_container(linux, &o.id, g.rootless_cgroups)?
    } else {
        cgroups::for_container(linux.cgroups_path().as_deref(), &o.id)?
    };
    // Rootless: only a cgroup the user may write (delegated) is made or
    // joined; a limit without one fails here, before anything exists.
    let (cg, cgroup_view) = if g.rootless_cgroups && !g.systemd_cgroup {
        let kept = cgroups::writable(cg.hierarchies());
        if let Some(r) = linux.resources() {
            cgroups::check_rootless_limits(cg.hierarchies(), &kept, r)?;
        }
        let view = (kept.len() < cg.hierarchies().len())
            .then(|| cgroups::rootless_view(&kept))
            .transpose()?;
        (cgroups::from_hierarchies(kept), view)
    } else {
        (cg, None)
    };
    let dir = StateDir::create(&g.root, &o.id)?;
    let mut saved = Saved {
        id: o.id.clone(),
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: crate::logging::rfc3339(SystemTime::now()),
        annotations: bundle.spec.annotations().clone().unwrap_or_default(),
        hooks: bundle.spec.hooks().clone(),
        resources: linux.resources().clone(),
        host_mounts: !linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Mount),
        ..Default::default()
    };
    let mut master = None;
    let result = (|| {
        let linux = bundle.spec.linux().as_ref().expect("validated");
        saved.cgroups = cg.hierarchies().to_vec();
        // Saved before anything exists, so `delete --force` can clean up after a crash.
        dir.save(&saved)?;
        cg.create()?;
        if cg.limits_at_apply() {
            // Written by the manager once the cgroup exists (process::spawn).
        } else if !g.rootless_cgroups {
            cgroups::devices::apply_for(cg.hierarchies(), linux)?;
        } else if let Err(e) = cgroups::devices::apply_for(cg.hierarchies(), linux) {
            // As runc: device rules are not expected to work without privilege.
            crate::logging::debug(|| format!("rootless: device cgroup rules not applied: {e}"));
        }
        if let Some(r) = linux.resources().as_ref().filter(|_| !cg.limits_at_apply()) {
            cg.set(r)?;
        }
        let (console, relay) = open_console(&bundle, o.console_socket.as_deref(), detached)?;
        let fifo_path = dir.fifo();
        mkfifo(&fifo_path, Mode::from_bits_truncate(0o622)).ctx(Error::Container, || {
            format!("mkfifo {}", fifo_path.display())
        })?;
        let fifo = open(&fifo_path, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
            .ctx(Error::Container, || format!("open {}", fifo_path.display()))?;
        let result_path = dir.path.join(state::RESULT);
        mkfifo(&result_path, Mode::from_bits_truncate(0o600)).ctx(Error::Container, || {
            format!("mkfifo {}", result_path.display())
        })?;
        let result = open(
            &result_path,
            OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(Error::Container, || {
            format!("open {}", result_path.display())
        })?;
        let seccomp_listener = match linux
            .seccomp()
            .as_ref()
            .and_then(|s| s.listener_path().as_ref())
        {
            Some(path) if seccomp.as_ref().is_some_and(|p| p.notify) => {
                let s = UnixStream::connect(path).ctx(Error::Container, || {
                    format!("connect to seccomp listener {}", path.display())
                })?;
                Some(OwnedFd::from(s))
            }
            _ => None,
        };
        let pid = process::spawn(process::Spawn {
            bundle: &bundle,
            cgroup: cg.as_ref(),
            fifo,
            result,
            console,
            preserve_fds: o.preserve_fds,
            listen_fds: listen_fds(),
            no_pivot: o.no_pivot,
            id: &o.id,
            seccomp: seccomp.clone(),
            seccomp_listener,
            lock: Some(dir.held_lock()),
            rootless: g.rootless,
            map_tools: map_tools.clone(),
            cgroup_view: cgroup_view.clone(),
        })?;
        crate::logging::debug(|| format!("container {} init is pid {pid}", o.id));
        // Known before any later step can fail, so the cleanup below kills
        // the init even where no cgroup holds it (rootless).
        saved.pid = pid.as_raw();
        // The systemd unit, now that it was started (a crash before this
        // leaves its directory in `cgroups`: delete kills what it holds and
        // systemd drops the empty unit).
        saved.systemd = cg.systemd_unit();
        saved.pid_start = state::process_start_time(pid).ok_or_else(|| {
            Error::Container(format!("container init {pid} died right after setup"))
        })?;
        process::netdev::move_devices(linux, pid)?;
        if let Some(r) = &relay {
            master = Some(crate::tty::recv_master(r)?);
        }
        dir.save(&saved)?;
        if let Some(pf) = &o.pid_file {
            write_pid_file(pf, pid)?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(Created { dir, saved, master }),
        Err(e) => {
            saved.systemd = cg.systemd_unit();
            if cg.limits_at_apply() && saved.systemd.is_none() {
                // systemd never started our unit: a cgroup at its path is
                // another unit's (of the same name), not ours to empty.
                saved.cgroups.clear();
            }
            let _ = destroy(dir, &saved);
            Err(e)
        }
    }
}

/// `--preserve-fds N`: the N fds after stdio (and after LISTEN_FDS) must be
/// open fds of ours; a count no fd table can hold is refused, not wrapped.
fn check_preserve_fds(n: u32, listen: u32) -> Result<()> {
    let first = 3 + u64::from(listen);
    let end = first + u64::from(n);
    let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .unwrap_or((1024, 1024));
    if end > soft {
        return Err(Error::Usage(format!(
            "--preserve-fds {n}: fds {first}..{} cannot all exist (RLIMIT_NOFILE is {soft})",
            end - 1
        )));
    }
    for fd in first..end {
        if std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_err() {
            return Err(Error::Usage(format!(
                "--preserve-fds {n}: fd {fd} is not open"
            )));
        }
    }
    Ok(())
}

/// How many socket-activation fds were passed to us (systemd's LISTEN_FDS,
/// honoured only when LISTEN_PID names this process, as sd_listen_fds does).
fn listen_fds() -> u32 {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
        .is_some_and(|p| p == std::process::id() as i32);
    if !ours {
        return 0;
    }
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The container's seccomp program, if it has a profile (cached by hash).
fn compile_seccomp(
    linux: &oci_spec::runtime::Linux,
    root: &Path,
) -> Result<Option<crate::security::seccomp::Program>> {
    linux
        .seccomp()
        .as_ref()
        .map(|s| crate::security::seccomp::compile_cached(s, root))
        .transpose()
}

/// The console socket the init sends its pty master to, from
/// process.terminal and `--console-socket` (which needs the terminal).
fn open_console(
    b: &spec::Bundle,
    socket: Option<&Path>,
    detached: bool,
) -> Result<(Option<OwnedFd>, Option<UnixStream>)> {
    let terminal = b
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if let (false, Some(path)) = (terminal, socket) {
        return Err(Error::Container(format!(
            "--console-socket {} given but process.terminal is false",
            path.display()
        )));
    }
    console_channel(terminal, socket, detached)
}

/// Where a process with a terminal sends its pty master: the caller's
/// `--console-socket`, or, for a foreground run/exec, one end of a pair
/// whose other end (returned second) ocirun reads the master from to relay
/// it. Nothing without a terminal.
fn console_channel(
    terminal: bool,
    socket: Option<&Path>,
    detached: bool,
) -> Result<(Option<OwnedFd>, Option<UnixStream>)> {
    match (terminal, socket) {
        (false, _) => Ok((None, None)),
        (true, Some(path)) => {
            let s = UnixStream::connect(path).ctx(Error::Container, || {
                format!("connect to console socket {}", path.display())
            })?;
            Ok((Some(OwnedFd::from(s)), None))
        }
        (true, None) if detached => Err(Error::Container(
            "a detached process with a terminal needs --console-socket".into(),
        )),
        (true, None) => {
            let (a, b) =
                UnixStream::pair().ctx(Error::Container, || "socketpair for the terminal relay")?;
            Ok((Some(OwnedFd::from(a)), Some(b)))
        }
    }
}

fn write_pid_file(path: &Path, pid: Pid) -> Result<()> {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let tmp = abs.with_file_name(format!(
        ".{}.tmp",
        abs.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::write(&tmp, pid.to_string())
        .and_then(|()| std::fs::rename(&tmp, &abs))
        .ctx(Error::Container, || {
            format!("write pid file {}", abs.display())
        })
}

pub fn start(g: &Global, id: &str) -> Result<()> {
    let dir = StateDir::open(&g.root, id)?;
    let saved = dir.load()?;
    start_locked(&dir, &saved)
}

fn start_locked(dir: &StateDir, saved: &Saved) -> Result<()> {
    dir.status(saved).allows(Op::Start, &saved.id)?;
    // Opened before the init is released, so its error cannot be missed.
    let result_path = dir.path.join(state::RESULT);
    let result = match open(
        &result_path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Some(fd),
        Err(Errno::ENOENT) => None, // made by an older ocirun
        Err(e) => {
            return Err(e).ctx(Error::Container, || {
                format!("open {}", result_path.display())
            });
        }
    };
    let fifo = dir.fifo();
    let f = open(
        &fifo,
        OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ENXIO => {
            Error::Container(format!("container {} init is gone", saved.id)).with_errno(e)
        }
        e => Error::Container(format!("open {}: {e:?}", fifo.display())).with_errno(e),
    })?;
    nix::unistd::write(&f, &[0]).ctx(Error::Container, || format!("write {}", fifo.display()))?;
    std::fs::remove_file(&fifo).ctx(Error::Container, || format!("remove {}", fifo.display()))?;
    if let Some(result) = result {
        let outcome = wait_exec(&result);
        let _ = std::fs::remove_file(&result_path);
        outcome.map_err(|e| Error::Container(format!("start container {}: {e}", saved.id)))?;
    }
    let state = crate::hooks::state_json(
        &saved.id,
        "running",
        saved.pid,
        &saved.bundle,
        &saved.annotations,
    );
    crate::hooks::run_logged(saved.hooks.as_ref(), crate::hooks::Kind::Poststart, &state);
    Ok(())
}

/// Waits until the init has exec'd the process (the result fifo's last
/// writer closes on execve) or reported why it could not.
fn wait_exec(result: &OwnedFd) -> std::result::Result<(), String> {
    let mut msg = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut pfd = [PollFd::new(result.as_fd(), PollFlags::POLLIN)];
        match poll(&mut pfd, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(format!("poll the exec result: {e:?}")),
        }
        match nix::unistd::read(result, &mut buf) {
            Ok(0) => break,
            Ok(n) => msg.extend_from_slice(&buf[..n]),
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(e) => return Err(format!("read the exec result: {e:?}")),
        }
    }
    if msg.is_empty() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&msg).trim_end().to_string())
    }
}

/// `state` output: the runtime spec's state plus runc's extra fields.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateOut {
    oci_version: &'static str,
    id: String,
    pid: i32,
    status: &'static str,
    bundle: PathBuf,
    rootfs: PathBuf,
    created: String,
    #[serde(skip_serializing_if = "std::collections::HashMap::is_empty")]
    annotations: std::collections::HashMap<String, String>,
    owner: String,
}

fn state_out(dir: &Path, s: Saved) -> StateOut {
    let status = state::status(dir, &s);
    StateOut {
        oci_version: spec::OCI_VERSION,
        pid: if status == Status::Stopped { 0 } else { s.pid },
        status: status.as_str(),
        id: s.id,
        bundle: s.bundle,
        rootfs: s.rootfs,
        created: s.created,
        annotations: s.annotations,
        owner: s.owner,
    }
}

pub fn state(g: &Global, id: &str) -> Result<String> {
    state::check_id(id)?;
    let dir = g.root.join(id);
    let saved = state::load(&dir)?;
    Ok(serde_json::to_string_pretty(&state_out(&dir, saved)).expect("state serialises"))
}

pub fn kill(g: &Global, id: &str, sig: &str, all: bool) -> Result<()> {
    let signo = signal::parse(sig)?;
    let dir = StateDir::open(&g.root, id)?;
    let saved = dir.load()?;
    let status = dir.status(&saved);
    if all {
        // Every process left in the cgroup, even when the init is gone (a
        // shared or the host's pid namespace), frozen while signalled so
        // that none forks one that escapes.
        let paused = status == Status::Paused;
        let froze = !paused && cgroups::freeze(&saved.cgroups, true).is_ok();
        for pid in state::processes(&saved).unwrap_or_default() {
            let _ = signal_pid(pid, None, signo);
        }
        // SIGKILL to a paused container takes effect only once thawed.
        if froze || (paused && signo == libc::SIGKILL) {
            cgroups::freeze(&saved.cgroups, false)?;
        }
        return Ok(());
    }
    status.allows(Op::Kill, id)?;
    let r = signal_pid(Pid::from_raw(saved.pid), Some(saved.pid_start), signo);
    // As runc: SIGKILL to a paused container thaws it, or nothing dies.
    if status == Status::Paused && signo == libc::SIGKILL {
        cgroups::freeze(&saved.cgroups, false)?;
    }
    r.map_err(|e| match e {
        Errno::ESRCH => Error::Container(format!("container {id}: container not running"))
            .with_kind(Kind::WrongStatus)
            .with_errno(e),
        e => Error::Container(format!(
            "signal {sig} to container {id} init {}: {e:?}",
            saved.pid
        ))
        .with_errno(e),
    })
}

/// Signals a process through a pidfd, after checking (when known) that the pid
/// still belongs to the process we started.
fn signal_pid(pid: Pid, start: Option<u64>, signo: i32) -> std::result::Result<(), Errno> {
    let fd = crate::sys::pidfd_open(pid)?;
    if let Some(t) = start
        && state::process_start_time(pid) != Some(t)
    {
        return Err(Errno::ESRCH);
    }
    crate::sys::pidfd_send_signal(fd.as_fd(), signo)
}

pub fn delete(g: &Global, id: &str, force: bool) -> Result<()> {
    state::check_id(id)?;
    if force && !g.root.join(id).exists() {
        return Ok(());
    }
    let dir = match StateDir::open(&g.root, id) {
        Ok(d) => d,
        // Another `delete --force` removed it while we waited for the lock.
        Err(e) if force && e.kind() == Some(Kind::NotFound) => return Ok(()),
        Err(e) => return Err(e),
    };
    let saved = match dir.load() {
        Ok(s) => s,
        // A create that died before writing anything: nothing but the dir.
        // Asked of the disk, not of the error: a read that fails otherwise
        // (ENOTDIR, ELOOP, EACCES) can leave state.json just as absent, and
        // such a dir takes this way too.
        Err(_) if !dir.path.join(state::STATE_FILE).exists() => return dir.remove(),
        Err(e) => return Err(e),
    };
    dir.status(&saved).allows(Op::Delete { force }, id)?;
    destroy(dir, &saved)
}

/// Kills whatever is left of a container, waits for it to be gone, removes
/// its cgroup and its state dir.
fn destroy(dir: StateDir, saved: &Saved) -> Result<()> {
    let cg = cgroups::from_saved(&saved.cgroups, saved.systemd.as_ref());
    let mut pidfds = Vec::new();
    let init = (saved.pid != 0).then(|| Pid::from_raw(saved.pid));
    let procs = state::processes(saved).unwrap_or_default();
    for pid in init.into_iter().chain(procs) {
        let start = (Some(pid) == init).then_some(saved.pid_start);
        if let Ok(fd) = crate::sys::pidfd_open(pid) {
            if start.is_some_and(|t| state::process_start_time(pid) != Some(t)) {
                continue;
            }
            let _ = crate::sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
            pidfds.push(fd);
        }
    }
    // A frozen cgroup holds its SIGKILLs until thawed.
    if cgroups::frozen(&saved.cgroups) {
        let _ = cgroups::freeze(&saved.cgroups, false);
    }
    wait_gone(&pidfds);
    // Processes forked while we were killing: the cgroup still holds them.
    for _ in 0..10 {
        let left = cg.procs().unwrap_or_default();
        if left.is_empty() {
            break;
        }
        let fds: Vec<OwnedFd> = left
            .into_iter()
            .filter_map(|p| crate::sys::pidfd_open(p).ok())
            .inspect(|fd| {
                let _ = crate::sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
            })
            .collect();
        wait_gone(&fds);
    }
    cg.destroy()?;
    if saved.host_mounts {
        crate::rootfs::unmount_below(&saved.rootfs)?;
    }
    let state =
        crate::hooks::state_json(&saved.id, "stopped", 0, &saved.bundle, &saved.annotations);
    crate::hooks::run_logged(saved.hooks.as_ref(), crate::hooks::Kind::Poststop, &state);
    dir.remove()
}

/// Blocks until every pidfd reports its process has exited.
fn wait_gone(fds: &[OwnedFd]) {
    let mut left: Vec<&OwnedFd> = fds.iter().collect();
    while !left.is_empty() {
        let mut pfds: Vec<PollFd> = left
            .iter()
            .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut pfds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
        let done: Vec<bool> = pfds.iter().map(|p| p.any().unwrap_or(true)).collect();
        left = left
            .into_iter()
            .zip(done)
            .filter(|(_, d)| !d)
            .map(|(f, _)| f)
            .collect();
    }
}

pub struct RunOpts {
    pub create: CreateOpts,
    pub detach: bool,
    pub keep: bool,
}

/// `run`: create + start; without --detach wait for the init, forwarding
/// signals to it, delete the container and return its exit status.
pub fn run(g: &Global, o: &RunOpts) -> Result<i32> {
    if o.detach {
        let c = create_locked(g, &o.create, true)?;
        return start_locked(&c.dir, &c.saved).map(|()| 0).inspect_err(|_| {
            let _ = destroy_by_id(g, &o.create.id);
        });
    }
    nix::sys::prctl::set_child_subreaper(true)
        .ctx(Error::Container, || "prctl PR_SET_CHILD_SUBREAPER")?;
    let forwarded = forwarded_signals();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), None)
        .ctx(Error::Container, || "block signals")?;
    let c = create_locked(g, &o.create, false)?;
    let Created { dir, saved, master } = c;
    let relay = master.map(crate::tty::Relay::new);
    if let Err(e) = start_locked(&dir, &saved) {
        drop(relay);
        let _ = destroy(dir, &saved);
        return Err(e);
    }
    let init = Pid::from_raw(saved.pid);
    drop(dir); // let `state`, `kill` and `exec` from others take the lock
    let code = wait_forwarding(init, &forwarded, relay);
    if !o.keep {
        let dir = StateDir::open(&g.root, &o.create.id)?;
        destroy(dir, &saved)?;
    }
    Ok(code)
}

fn destroy_by_id(g: &Global, id: &str) -> Result<()> {
    let dir = StateDir::open(&g.root, id)?;
    let saved = dir.load()?;
    destroy(dir, &saved)
}

fn forwarded_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTERM,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCONT,
        Signal::SIGALRM,
        Signal::SIGPIPE,
    ] {
        set.add(s);
    }
    set
}

/// Waits for `init` to exit, forwarding the signals in `set` (blocked by the
/// caller) to it and relaying its terminal if there is one. SIGWINCH resizes
/// the relayed pty and is not forwarded (as runc does). Returns the exit
/// status, 128+N for a signal.
fn wait_forwarding(init: Pid, set: &SigSet, mut relay: Option<crate::tty::Relay>) -> i32 {
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let sfd = match SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC) {
        Ok(f) => f,
        Err(e) => {
            crate::logging::log("error", &format!("signalfd: {e:?}"));
            return wait_plain(init);
        }
    };
    loop {
        let relay_fds = relay.as_ref().map(|r| r.poll_fds()).unwrap_or_default();
        let mut pfds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        pfds.extend(relay_fds.iter().map(|f| PollFd::new(*f, PollFlags::POLLIN)));
        match poll(&mut pfds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(_) => return wait_plain(init),
        }
        let ready: Vec<bool> = pfds.iter().map(|p| p.any().unwrap_or(false)).collect();
        drop(pfds);
        drop(relay_fds);
        if let Some(r) = relay.as_mut() {
            for (i, _) in ready.iter().enumerate().skip(1).filter(|(_, r)| **r).rev() {
                r.ready(i - 1);
            }
        }
        if !ready[0] {
            continue;
        }
        let Ok(Some(info)) = sfd.read_signal() else {
            continue;
        };
        match Signal::try_from(info.ssi_signo as i32) {
            Ok(Signal::SIGCHLD) => {
                if let Some(code) = reap(init) {
                    if let Some(r) = relay.as_mut() {
                        r.drain();
                    }
                    return code;
                }
            }
            Ok(Signal::SIGWINCH) => {
                if let Some(r) = &relay {
                    r.resize();
                }
            }
            Ok(sig) => {
                let _ = nix::sys::signal::kill(init, sig);
            }
            Err(_) => {}
        }
    }
}

/// Reaps every exited child; `init`'s exit status once it is among them.
fn reap(init: Pid) -> Option<i32> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p == init => return Some(code),
            Ok(WaitStatus::Signaled(p, s, _)) if p == init => return Some(128 + s as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Without a signalfd: wait for `init` only.
fn wait_plain(init: Pid) -> i32 {
    loop {
        match waitpid(init, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Err(Errno::EINTR) | Ok(_) => continue,
            Err(_) => return 255,
        }
    }
}

#[derive(Serialize)]
pub struct ListEntry {
    #[serde(flatten)]
    state: StateOut,
}

pub fn list(g: &Global, json: bool, quiet: bool) -> Result<String> {
    let mut entries = Vec::new();
    match std::fs::read_dir(&g.root) {
        Ok(rd) => {
            for e in rd.flatten() {
                let dir = e.path();
                // `.cache` and other dot entries are ours, not containers.
                if e.file_name().to_string_lossy().starts_with('.') || !dir.is_dir() {
                    continue;
                }
                match state::load(&dir) {
                    Ok(s) => entries.push(state_out(&dir, s)),
                    // A create or delete in progress has no state.json for
                    // a moment; anything else is worth saying (runc warns).
                    Err(err) if err.kind() != Some(Kind::NotFound) || !state::locked(&dir) => {
                        crate::logging::warn(&format!(
                            "list: skipping {}: {err}",
                            e.file_name().to_string_lossy()
                        ));
                    }
                    Err(_) => {}
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).ctx(Error::Container, || format!("read {}", g.root.display()));
        }
    }
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    if quiet {
        return Ok(entries.iter().map(|e| format!("{}\n", e.id)).collect());
    }
    if json {
        let list: Vec<ListEntry> = entries
            .into_iter()
            .map(|state| ListEntry { state })
            .collect();
        return Ok(format!(
            "{}\n",
            serde_json::to_string(&list).expect("list serialises")
        ));
    }
    let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from)];
    for e in &entries {
        rows.push([
            e.id.clone(),
            e.pid.to_string(),
            e.status.to_string(),
            e.bundle.display().to_string(),
            e.created.clone(),
            e.owner.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            if i == 5 {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        out.push('\n');
    }
    Ok(out)
}

/// `spec`: writes config.json into `bundle`, refusing to overwrite one.
pub fn write_spec(bundle: &Path, rootless: bool) -> Result<()> {
    let path = bundle.join("config.json");
    let spec = spec::default_spec(rootless)?;
    let text = serde_json::to_string_pretty(&spec).expect("spec serialises");
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path);
    let mut f = match opened {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(
                Error::Usage(format!("{} exists: remove it first", path.display()))
                    .with_kind(Kind::Exists)
                    .with_errno(Errno::EEXIST),
            );
        }
        r => r.ctx(Error::Usage, || format!("create {}", path.display()))?,
    };
    f.write_all(text.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .ctx(Error::Usage, || format!("write {}", path.display()))
}

/// What `exec` needs besides the process (runc's `exec` flags).
pub struct ExecOpts {
    pub id: String,
    /// Return once the process runs instead of waiting for it.
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    /// Exec even into a paused container (the process starts frozen).
    pub ignore_paused: bool,
    /// Existing sub-cgroups to run in: `[CONTROLLER[,CONTROLLER]:]PATH`.
    pub cgroup: Vec<String>,
}

/// `exec`: a new process in a created or running container. Returns the
/// process's exit status (or 0 with --detach). `process` gives the process
/// to run from the container's config, once the container is known to take
/// an exec (`cli::exec::process` builds it from runc's flags, as runc's
/// `getProcess`).
pub fn exec(
    g: &Global,
    a: &ExecOpts,
    process: impl FnOnce(&oci_spec::runtime::Spec) -> Result<oci_spec::runtime::Process>,
) -> Result<i32> {
    let dir = StateDir::open(&g.root, &a.id)?;
    let saved = dir.load()?;
    let status = dir.status(&saved);
    status.allows(
        Op::Exec {
            ignore_paused: a.ignore_paused,
        },
        &a.id,
    )?;
    // Into a paused container the process cannot finish its setup until
    // `resume`, which needs the lock: let it go now.
    let dir = (status != Status::Paused).then_some(dir);
    check_preserve_fds(a.preserve_fds, 0)?;
    let bundle = spec::load(&saved.bundle)?;
    let mut process = process(&bundle.spec)?;
    crate::security::drop_ungrantable(&mut process);
    crate::security::lsm::check(&process)?;
    let linux = bundle.spec.linux().as_ref().expect("validated");
    let seccomp = compile_seccomp(linux, &g.root)?;
    let namespaces: Vec<_> = linux
        .namespaces()
        .iter()
        .flatten()
        .map(|n| n.typ())
        .collect();
    let (console, relay_rx) = console_channel(
        process.terminal().unwrap_or(false),
        a.console_socket.as_deref(),
        a.detach,
    )?;
    let seccomp_listener = match (linux.seccomp().as_ref(), &seccomp) {
        (Some(sc), Some(prog)) if prog.notify => {
            let path = sc.listener_path().as_ref().expect("compile checks it");
            let sock = UnixStream::connect(path).ctx(Error::Container, || {
                format!("connect to seccomp listener {}", path.display())
            })?;
            let state = crate::hooks::State::new(
                &saved.id,
                "running",
                saved.pid,
                &saved.bundle,
                &saved.annotations,
            );
            Some((
                OwnedFd::from(sock),
                crate::security::seccomp::listener_state(sc, 0, &state),
            ))
        }
        _ => None,
    };
    let cg = cgroups::from_hierarchies(cgroups::sub_cgroups(&saved.cgroups, &a.cgroup)?);
    let forwarded = forwarded_signals();
    if !a.detach {
        nix::sys::prctl::set_child_subreaper(true)
            .ctx(Error::Container, || "prctl PR_SET_CHILD_SUBREAPER")?;
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), None)
            .ctx(Error::Container, || "block signals")?;
    }
    let pid = process::exec::spawn(process::exec::ExecSpawn {
        process: &process,
        linux: Some(linux),
        init_pid: Pid::from_raw(saved.pid),
        namespaces,
        cgroup: cg.as_ref(),
        seccomp,
        console,
        preserve_fds: a.preserve_fds,
        seccomp_listener,
        lock: dir.as_ref().map(|d| d.held_lock()),
    })?;
    let relay = match &relay_rx {
        Some(rx) => match crate::tty::recv_master(rx) {
            Ok(m) => Some(crate::tty::Relay::new(m)),
            Err(e) => {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                return Err(e);
            }
        },
        None => None,
    };
    if let Some(pf) = &a.pid_file {
        write_pid_file(pf, pid)?;
    }
    drop(dir);
    if a.detach {
        return Ok(0);
    }
    Ok(wait_forwarding(pid, &forwarded, relay))
}
