//! The suite's only `unsafe`: taking ownership of an fd received over
//! SCM_RIGHTS (a console socket receiver, as containerd's and conmon's), and
//! setting a test terminal's window size, and reading a pid's scheduling policy.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

/// Receives one message with one fd; returns the message data and the fd.
pub fn recv_fd(conn: &UnixStream) -> std::io::Result<(Vec<u8>, OwnedFd)> {
    let mut buf = [0u8; 4096];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let n = msg.bytes;
    let mut fd = None;
    for cm in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cm {
            // SAFETY: the kernel just installed these fds in our table for this
            // message; nothing else refers to them, so we may own the first.
            fd = fds.first().map(|f| unsafe { OwnedFd::from_raw_fd(*f) });
        }
    }
    let fd = fd.ok_or_else(|| std::io::Error::other("no fd in the console socket message"))?;
    Ok((buf[..n].to_vec(), fd))
}

/// Reads a pty master until `marker` appears (or the pty closes); returns
/// what was read.
pub fn read_until(master: OwnedFd, marker: &str) -> String {
    use std::io::Read;
    let mut f = std::fs::File::from(master);
    let mut out = String::new();
    let mut chunk = [0u8; 1024];
    while !out.contains(marker) {
        match f.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.push_str(&String::from_utf8_lossy(&chunk[..n])),
        }
    }
    out
}

/// Sets the window size of the terminal behind `fd` (TIOCSWINSZ).
pub fn set_winsize(fd: &impl std::os::fd::AsFd, rows: u16, cols: u16) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize struct that lives on our stack
    // for the duration of the call.
    let r = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `sched_getscheduler(2)` of a host pid: the policy, with
/// SCHED_RESET_ON_FORK (0x40000000) or'ed in; -1 on error.
pub fn sched_getscheduler(pid: i32) -> i32 {
    // SAFETY: one integer argument, no memory is passed.
    unsafe { libc::sched_getscheduler(pid) }
}
