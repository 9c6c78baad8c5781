//! `kill`: a signal to the init, or to every process of the container.

use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::unistd::Pid;

use super::state::{self, Op, StateDir, Status};
use super::{Global, signal};
use crate::cgroups;
use crate::error::{Error, Kind, Result};

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
