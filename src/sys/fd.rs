//! File descriptors: passed over unix sockets (SCM_RIGHTS), marked
//! close-on-exec before the container's process runs, the few known only
//! by number, and the state dir's lock that forked children let go of.

use std::cell::Cell;
use std::fs::File;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::Flock;
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

/// Sends `fd` over the connected unix socket `socket` in one message whose
/// data is `data` (the runc layouts: the pty's name for a console socket, the
/// container state for a seccomp listener). The caller says what it sent.
pub(crate) fn send_fd(socket: BorrowedFd<'_>, data: &str, fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let fds = [fd.as_raw_fd()];
    let iov = [IoSlice::new(data.as_bytes())];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(drop)
}

/// Reads a small file whole, as text: /proc and cgroupfs files,
/// /etc/passwd. `fs::read_to_string` asks the size first (statx; these
/// files say 0) and then reads in growing steps from 32 bytes; here one
/// read of up to a page takes the file, one more sees its end, and the
/// text is allocated at its size.
pub(crate) fn read_text(path: impl AsRef<std::path::Path>) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut page = [0u8; 4096];
    let mut text = Vec::new();
    loop {
        match std::io::Read::read(&mut f, &mut page) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&page[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Writes `data` in one write(2) to a file that must exist: cgroupfs,
/// /proc. `fs::write` opens with O_CREAT|O_TRUNC: on cgroupfs the truncate
/// is a setattr the kernel does for nothing (about 1 us a write), and a
/// file the kernel does not have is reported as "permission denied"
/// (EACCES from the create) instead of "no such file" (ENOENT).
pub(crate) fn write_existing(
    path: impl AsRef<std::path::Path>,
    data: &[u8],
) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    std::io::Write::write_all(&mut f, data)
}

/// Receives one message on a unix socket (close-on-exec) and returns the
/// first fd its SCM_RIGHTS data carried, if any; any others are closed.
/// One message from `socket` into `buf`'s capacity (its old contents
/// dropped): the buffer is not zeroed first, so a 64 KiB buffer costs the
/// pages the message fills, not 16 page faults.
pub(crate) fn recv_into(socket: BorrowedFd<'_>, buf: &mut Vec<u8>) -> Result<usize, Errno> {
    buf.clear();
    let spare = buf.spare_capacity_mut();
    let n = loop {
        // SAFETY: recv(2) writes at most `spare.len()` bytes into the
        // buffer's spare capacity, which `spare` borrows mutably.
        let r = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
                0,
            )
        };
        match Errno::result(r) {
            Ok(n) => break n as usize,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    };
    // SAFETY: the kernel initialised the first `n` bytes of the spare
    // capacity (n <= its length).
    unsafe { buf.set_len(n) };
    Ok(n)
}

pub(crate) fn recv_fd(socket: BorrowedFd<'_>) -> Result<Option<OwnedFd>, Errno> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut received = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: recvmsg just installed this fd in our table for this
                // message; nothing else knows its number, so it gets its only
                // owner here.
                received.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok(received.into_iter().next())
}

/// Marks every fd from `first` upwards close-on-exec (`close_range(2)` with
/// `CLOSE_RANGE_CLOEXEC`), so nothing of ours reaches the container process.
pub(crate) fn cloexec_from(first: u32) -> Result<(), Errno> {
    // SAFETY: close_range takes plain integers; CLOEXEC only sets a flag, it
    // closes nothing that Rust code might still own.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    Errno::result(ret).map(drop)
}

/// Marks every open fd from `first` close-on-exec one by one: the fallback
/// where close_range is refused. Walks up to the soft RLIMIT_NOFILE.
pub(crate) fn cloexec_each_from(first: u32) -> Result<(), Errno> {
    let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
    let last = soft.min(1 << 20) as RawFd;
    for fd in first as RawFd..last {
        // SAFETY: F_GETFD/F_SETFD only read and set the fd's flags; an fd
        // that is not open fails with EBADF and is skipped.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
            // SAFETY: as above.
            Errno::result(unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) })?;
        }
    }
    Ok(())
}

/// write(2) to an fd known only by number (a panic hook's), ignoring errors.
pub(crate) fn write_raw(fd: RawFd, data: &[u8]) {
    // SAFETY: the buffer is valid for its length; a closed or bad fd only
    // makes the call fail.
    let _ = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
}

/// An exclusive `flock` held on an open file (the state dir) until it is
/// dropped. A forked child shares it with the parent (one open file
/// description): it lets go of its copy with [`Lock::close_in_child`], so it
/// cannot keep the container locked after the parent dies, without
/// unlocking it for the parent.
pub(crate) struct Lock(Cell<Option<Flock<File>>>);

impl Lock {
    pub(crate) fn new(lock: Flock<File>) -> Lock {
        Lock(Cell::new(Some(lock)))
    }

    /// Closes this process's copy of the lock's fd without unlocking (the
    /// parent keeps the lock); the lock is gone from this `Lock`, whose drop
    /// then does nothing. Meant for a forked child.
    pub(crate) fn close_in_child(&self) {
        if let Some(lock) = self.0.take() {
            let fd = lock.as_raw_fd();
            // Not dropped: that would unlock the parent's lock too.
            std::mem::forget(lock);
            // SAFETY: `lock` owned `fd` and is forgotten, so nothing else
            // uses or closes it.
            unsafe { close_inherited(fd) };
        }
    }
}

/// Closes `fd` and ignores errors.
///
/// # Safety
///
/// The caller must own `fd` and nothing may use or close it afterwards:
/// closing an fd another owner holds lets it reach whatever file later gets
/// the same number.
unsafe fn close_inherited(fd: RawFd) {
    // SAFETY: the caller owns `fd` and nothing uses it again.
    let _ = unsafe { libc::close(fd) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_existing_never_creates_and_says_no_such_file() {
        let dir = std::env::temp_dir().join(format!("ocirun-fd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("memory.memsw.limit_in_bytes");
        let e = write_existing(&missing, b"1").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(!missing.exists());
        let f = dir.join("pids.max");
        std::fs::write(&f, "").unwrap();
        write_existing(&f, b"max").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "max");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
