//! `exec`: a new process in a created or running container.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sys::signal::{SigmaskHow, Signal, sigprocmask};
use nix::unistd::Pid;

use super::Global;
use super::create::{check_preserve_fds, compile_seccomp, console_channel, write_pid_file};
use super::state::{Op, StateDir, Status};
use super::wait::{forwarded_signals, wait_forwarding};
use crate::cgroups;
use crate::error::{Context, Error, Result};
use crate::process;
use crate::spec;

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
