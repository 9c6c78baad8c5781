//! `delete`: kill what is left, wait for it, remove the cgroup and the
//! state dir.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::Pid;

use super::Global;
use super::state::{self, Op, Saved, StateDir};
use crate::cgroups;
use crate::error::{Kind, Result};

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
pub(super) fn destroy(dir: StateDir, saved: &Saved) -> Result<()> {
    let cg = cgroups::from_saved(&saved.cgroups, saved.systemd.as_ref());
    // A cgroup of our own makes its rmdir the test that nothing is left (the
    // kernel refuses it with EBUSY while a process is in it): the init is
    // killed, and the cgroup read only when the rmdir fails. A systemd unit
    // is not (stopping it would SIGTERM what is left and wait), nor is a
    // container with no cgroup.
    let rmdir_first = saved.systemd.is_none() && !saved.cgroups.is_empty();
    let mut pidfds = Vec::new();
    let init = (saved.pid != 0).then(|| Pid::from_raw(saved.pid));
    let procs = if rmdir_first {
        Vec::new()
    } else {
        state::processes(saved).unwrap_or_default()
    };
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
    wait_killed(saved, &pidfds);
    if !(rmdir_first && cg.destroy().is_ok()) {
        // Processes forked while we were killing (or, with rmdir_first, any
        // but the init): the cgroup still holds them.
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
            wait_killed(saved, &fds);
        }
        cg.destroy()?;
    }
    if saved.host_mounts {
        crate::rootfs::unmount_below(&saved.rootfs)?;
    }
    let state =
        crate::hooks::state_json(&saved.id, "stopped", 0, &saved.bundle, &saved.annotations);
    crate::hooks::run_logged(saved.hooks.as_ref(), crate::hooks::Kind::Poststop, &state);
    dir.remove()
}

/// Waits for the processes just sent SIGKILL (`fds`) to be gone, thawing
/// their cgroup first if it is frozen: it holds their SIGKILLs until then.
fn wait_killed(saved: &Saved, fds: &[OwnedFd]) {
    if fds.is_empty() {
        return;
    }
    if cgroups::frozen(&saved.cgroups) {
        let _ = cgroups::freeze(&saved.cgroups, false);
    }
    wait_gone(fds);
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

pub(super) fn destroy_by_id(g: &Global, id: &str) -> Result<()> {
    let dir = StateDir::open(&g.root, id)?;
    let saved = dir.load()?;
    destroy(dir, &saved)
}
