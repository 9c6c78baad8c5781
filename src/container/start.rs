//! `start`: the byte into the exec fifo, then the init's exec result and
//! the poststart hooks.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::Mode;

use super::Global;
use super::state::{self, Op, Saved, StateDir};
use crate::error::{Context, Error, Result};

pub fn start(g: &Global, id: &str) -> Result<()> {
    let dir = StateDir::open(&g.root, id)?;
    let saved = dir.load()?;
    dir.status(&saved).allows(Op::Start, &saved.id)?;
    start_created(&dir, &saved)
}

/// Starts a container known to be `created`: `start` asked its status
/// above; `run` holds the lock since it created it. An init that died since
/// is found by the fifo's open ("init is gone").
pub(super) fn start_created(dir: &StateDir, saved: &Saved) -> Result<()> {
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
