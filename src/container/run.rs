//! `run`: create and start, then in the foreground wait for the init and
//! delete the container.

use nix::sys::signal::{SigmaskHow, sigprocmask};
use nix::unistd::Pid;

use super::Global;
use super::create::{CreateOpts, Created, create_locked};
use super::delete::{destroy, destroy_by_id};
use super::start::start_created;
use super::state::StateDir;
use super::wait::{forwarded_signals, wait_forwarding};
use crate::error::{Context, Error, Result};

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
        return start_created(&c.dir, &c.saved)
            .map(|()| 0)
            .inspect_err(|_| {
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
    if let Err(e) = start_created(&dir, &saved) {
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
