//! Terminals: a pty made inside the container's devpts, its master sent to
//! `--console-socket` exactly as runc does (one SCM_RIGHTS message whose data
//! is the pty's name), its slave made the process's stdio and controlling tty.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{OFlag, open};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use nix::sys::stat::Mode;
use oci_spec::runtime::Box as ConsoleSize;

use crate::error::{Context, Error, Result};

/// Sends `fd` over a connected unix socket with `name` as the message data.
pub fn send_fd(socket: &impl AsFd, name: &str, fd: &impl AsFd) -> Result<()> {
    let fds = [fd.as_fd().as_raw_fd()];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(
        socket.as_fd().as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .ctx(
        Error::Process,
        || "send the pty master to the console socket",
    )?;
    Ok(())
}

/// In the container, after pivot_root: makes the pty, binds its slave on
/// /dev/console, hands the master to the console socket and makes the slave
/// our stdio and controlling terminal. The caller has already called setsid.
pub fn setup_console(socket: &OwnedFd, size: Option<&ConsoleSize>) -> Result<()> {
    open_console(socket, size, true)
}

/// As `setup_console`, for a process exec'd into a running container: its
/// /dev/console is the init's and stays so.
pub fn setup_console_exec(socket: &OwnedFd, size: Option<&ConsoleSize>) -> Result<()> {
    open_console(socket, size, false)
}

fn open_console(socket: &OwnedFd, size: Option<&ConsoleSize>, bind: bool) -> Result<()> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .ctx(Error::Process, || "open /dev/ptmx in the container")?;
    grantpt(&master).ctx(Error::Process, || "grantpt")?;
    unlockpt(&master).ctx(Error::Process, || "unlockpt")?;
    let name = ptsname_r(&master).ctx(Error::Process, || "ptsname")?;
    let slave = open(
        Path::new(&name),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(Error::Process, || format!("open {name}"))?;
    if let Some(s) = size {
        crate::sys::set_winsize(master.as_fd(), s.height() as u16, s.width() as u16)
            .ctx(Error::Process, || {
                format!("set console size {}x{}", s.width(), s.height())
            })?;
    }
    if bind {
        bind_console(&name)?;
    }
    send_fd(socket, "/dev/ptmx", &master)?;
    drop(master);
    crate::sys::set_controlling_tty(slave.as_fd()).ctx(Error::Process, || {
        format!("make {name} the controlling terminal")
    })?;
    for target in 0..=2 {
        let r = match target {
            0 => nix::unistd::dup2_stdin(&slave),
            1 => nix::unistd::dup2_stdout(&slave),
            _ => nix::unistd::dup2_stderr(&slave),
        };
        r.ctx(Error::Process, || format!("dup {name} to fd {target}"))?;
    }
    Ok(())
}

/// /dev/console in the container is the pty slave (as runc does it).
fn bind_console(name: &str) -> Result<()> {
    use nix::mount::{MsFlags, mount};
    let console = Path::new("/dev/console");
    match std::fs::symlink_metadata(console) {
        Ok(m) if m.file_type().is_symlink() || m.is_dir() => {
            return Err(Error::Process(
                "/dev/console in the container is not a plain file".into(),
            ));
        }
        Ok(_) => {}
        Err(_) => {
            std::fs::File::create(console).ctx(Error::Process, || "create /dev/console")?;
        }
    }
    mount(
        Some(name),
        console,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .ctx(Error::Process, || format!("bind {name} on /dev/console"))
}
