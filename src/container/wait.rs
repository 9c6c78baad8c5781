//! The foreground wait of `run` and `exec`: signals forwarded to the
//! process, its terminal relayed, its exit status returned.

use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

pub(super) fn forwarded_signals() -> SigSet {
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
pub(super) fn wait_forwarding(
    init: Pid,
    set: &SigSet,
    mut relay: Option<crate::tty::Relay>,
) -> i32 {
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
