//! Terminals: a pty made inside the container's devpts, its master sent to
//! `--console-socket` exactly as runc does (one SCM_RIGHTS message whose data
//! is the pty's name), its slave made the process's stdio and controlling tty.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use oci_spec::runtime::Box as ConsoleSize;
use pathrs::flags::OpenFlags;

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
    // The slave straight from the master (no /dev/pts/N lookup a rootfs or a
    // racing mount could redirect: CVE-2025-52565), checked to be a pty.
    let slave = crate::sys::pty_peer(master.as_fd())
        .ctx(Error::Process, || format!("open the peer of {name}"))?;
    check_pty_slave(&slave, &name)?;
    if let Some(s) = size {
        crate::sys::set_winsize(master.as_fd(), s.height() as u16, s.width() as u16)
            .ctx(Error::Process, || {
                format!("set console size {}x{}", s.width(), s.height())
            })?;
    }
    if bind {
        bind_console(&slave, &name)?;
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

/// A devpts file that is a pty slave (majors 136-143).
fn check_pty_slave(slave: &OwnedFd, name: &str) -> Result<()> {
    const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;
    let fs = nix::sys::statfs::fstatfs(slave).ctx(Error::Process, || format!("statfs {name}"))?;
    let st = nix::sys::stat::fstat(slave).ctx(Error::Process, || format!("stat {name}"))?;
    let is_chr = st.st_mode & libc::S_IFMT == libc::S_IFCHR;
    let major = libc::major(st.st_rdev);
    if fs.filesystem_type().0 as i64 != DEVPTS_SUPER_MAGIC
        || !is_chr
        || !(136..=143).contains(&major)
    {
        return Err(Error::Process(format!(
            "{name} is not a pty slave on devpts"
        )));
    }
    Ok(())
}

/// /dev/console in the container is the pty slave (as runc does it). The
/// target is resolved inside the container root without following a final
/// symlink, must be a regular file (made here, O_EXCL, when missing), and
/// the bind goes from the slave's fd to the target's fd (CVE-2025-52565).
fn bind_console(slave: &OwnedFd, name: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let root = pathrs::Root::open("/").ctx(Error::Process, || "open the container root")?;
    let console = "/dev/console";
    let target = match root.resolve_nofollow(console) {
        Ok(h) => h,
        Err(e)
            if matches!(
                e.kind(),
                pathrs::error::ErrorKind::OsError(Some(libc::ENOENT))
            ) =>
        {
            root.create_file(
                console,
                OpenFlags::O_CREAT
                    | OpenFlags::O_EXCL
                    | OpenFlags::O_NOFOLLOW
                    | OpenFlags::O_WRONLY
                    | OpenFlags::O_CLOEXEC,
                &std::fs::Permissions::from_mode(0o600),
            )
            .ctx(Error::Process, || format!("create {console}"))?;
            root.resolve_nofollow(console)
                .ctx(Error::Process, || format!("resolve {console}"))?
        }
        Err(e) => return Err(Error::Process(format!("resolve {console}: {e}"))),
    };
    let st = nix::sys::stat::fstat(&target).ctx(Error::Process, || format!("stat {console}"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Error::Process(format!(
            "{console} in the container is not a regular file"
        )));
    }
    crate::rootfs::bind_fd(slave.as_fd(), target.as_fd())
        .ctx(Error::Process, || format!("bind {name} on {console}"))
}
