//! `create`: the state dir, the cgroup, the init cloned and set up, up to
//! the moment it waits for `start`; the helpers `exec` shares with it
//! (preserved fds, the seccomp program, the console, the pid file).

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nix::unistd::{Pid, mkfifo};

use super::Global;
use super::delete::destroy;
use super::state::{self, Saved, StateDir};
use crate::cgroups;
use crate::error::{Context, Error, Result};
use crate::process;
use crate::spec;

pub struct CreateOpts {
    pub id: String,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
}

/// A container that has been created and whose lock we still hold.
pub(super) struct Created {
    pub(super) dir: StateDir,
    pub(super) saved: Saved,
    /// The pty master to relay, for a foreground `run` with a terminal.
    pub(super) master: Option<OwnedFd>,
}

pub fn create(g: &Global, o: &CreateOpts) -> Result<()> {
    create_locked(g, o, true).map(drop)
}

pub(super) fn create_locked(g: &Global, o: &CreateOpts, detached: bool) -> Result<Created> {
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
pub(super) fn check_preserve_fds(n: u32, listen: u32) -> Result<()> {
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
pub(super) fn compile_seccomp(
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
pub(super) fn console_channel(
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

pub(super) fn write_pid_file(path: &Path, pid: Pid) -> Result<()> {
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
