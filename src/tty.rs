//! Terminals: a pty made inside the container's devpts, its master sent to
//! `--console-socket` exactly as runc does (one SCM_RIGHTS message whose data
//! is the pty's name), its slave made the process's stdio and controlling tty.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use oci_spec::runtime::Box as ConsoleSize;
use pathrs::flags::OpenFlags;

use crate::error::{Context, Error, Result};

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
    crate::sys::fd::send_fd(socket.as_fd(), "/dev/ptmx", master.as_fd()).ctx(
        Error::Process,
        || "send the pty master to the console socket",
    )?;
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
        Err(e) if crate::rootfs::is_enoent(&e) => {
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
    crate::sys::mount::bind_fd(slave.as_fd(), target.as_fd())
        .ctx(Error::Process, || format!("bind {name} on {console}"))
}

/// Receives the pty master a container's process sent over `socket` (the
/// other end of the pair ocirun passed as its console socket).
pub fn recv_master(socket: &impl AsFd) -> Result<OwnedFd> {
    crate::sys::fd::recv_fd(socket.as_fd())
        .ctx(Error::Process, || "receive the pty master")?
        .ok_or_else(|| Error::Process("receive the pty master: no fd in the message".into()))
}

/// A foreground `run`/`exec` with a terminal and no console socket: ocirun
/// relays between its own stdin/stdout and the container's pty master, with
/// its terminal (when stdin is one) in raw mode until the relay ends, and the
/// pty's window size following ours (as `runc run` does).
pub struct Relay {
    master: OwnedFd,
    /// A dup of our stdin; None once it reached end of input.
    stdin: Option<OwnedFd>,
    saved: Option<nix::sys::termios::Termios>,
    master_open: bool,
}

impl Relay {
    pub fn new(master: OwnedFd) -> Relay {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            cfmakeraw(&mut raw);
            if let Err(e) = tcsetattr(&stdin, SetArg::TCSANOW, &raw) {
                crate::logging::debug(|| format!("raw mode on stdin: {e:?}"));
            }
        }
        let r = Relay {
            master,
            stdin: stdin.as_fd().try_clone_to_owned().ok(),
            saved,
            master_open: true,
        };
        r.resize();
        r
    }

    /// Copies our terminal's window size to the pty (nothing when stdin is
    /// not a terminal).
    pub fn resize(&self) {
        let stdin = std::io::stdin();
        if let Ok((rows, cols)) = crate::sys::get_winsize(stdin.as_fd()) {
            let _ = crate::sys::set_winsize(self.master.as_fd(), rows, cols);
        }
    }

    /// The fds to poll: the master (output), then stdin (input) while open.
    pub fn poll_fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        let mut v = Vec::new();
        if self.master_open {
            v.push(self.master.as_fd());
        }
        if let Some(s) = &self.stdin {
            v.push(s.as_fd());
        }
        v
    }

    /// Handles readiness of the fd at `index` of `poll_fds`.
    pub fn ready(&mut self, index: usize) {
        if self.master_open && index == 0 {
            if !self.copy_out() {
                self.master_open = false;
            }
        } else if !self.copy_in() {
            self.stdin = None;
        }
    }

    /// Master -> stdout, one read; false once the pty has no writer left.
    fn copy_out(&self) -> bool {
        let mut buf = [0u8; 8192];
        match nix::unistd::read(self.master.as_fd(), &mut buf) {
            Ok(0) => false,
            Ok(n) => {
                write_all(std::io::stdout().as_fd(), &buf[..n]);
                true
            }
            Err(Errno::EINTR | Errno::EAGAIN) => true,
            Err(_) => false,
        }
    }

    /// stdin -> master, one read; false at end of input.
    fn copy_in(&self) -> bool {
        let Some(stdin) = &self.stdin else {
            return false;
        };
        let mut buf = [0u8; 8192];
        match nix::unistd::read(stdin.as_fd(), &mut buf) {
            Ok(0) => false,
            Ok(n) => {
                write_all(self.master.as_fd(), &buf[..n]);
                true
            }
            Err(Errno::EINTR | Errno::EAGAIN) => true,
            Err(_) => false,
        }
    }

    /// After the process exited: whatever it wrote that is still in the pty.
    pub fn drain(&mut self) {
        use nix::fcntl::{FcntlArg, fcntl};
        if !self.master_open {
            return;
        }
        let _ = fcntl(&self.master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        let mut buf = [0u8; 8192];
        while let Ok(n) = nix::unistd::read(self.master.as_fd(), &mut buf) {
            if n == 0 {
                break;
            }
            write_all(std::io::stdout().as_fd(), &buf[..n]);
        }
        self.master_open = false;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let stdin = std::io::stdin();
            let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSADRAIN, t);
        }
    }
}

fn write_all(fd: std::os::fd::BorrowedFd<'_>, mut buf: &[u8]) {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut p = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLOUT)];
                let _ = nix::poll::poll(&mut p, nix::poll::PollTimeout::NONE);
            }
            Err(_) => return,
        }
    }
}
