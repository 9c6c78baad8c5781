//! Thin safe wrappers for the system calls that nix does not cover.
//! This module is the only place in ocirun with `unsafe`; only sys turns a
//! raw fd into an `OwnedFd`. Private to the crate, whose root re-exports
//! [`start_process`] for the binary.

pub(crate) mod bpf;
pub(crate) mod fd;
pub(crate) mod mount;
pub(crate) mod netlink;
pub(crate) mod sched;

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::unistd::Pid;

/// The result of [`clone_process`].
pub(crate) enum Forked {
    Parent(Pid),
    Child,
}

/// Fails with EDEADLK unless the calling process is single-threaded, which
/// makes a fork sound: in the child no lock (the allocator's included) can
/// be held by a thread that does not exist there. `unshare(CLONE_VM)` does
/// nothing but this check (the kernel refuses it with EINVAL while other
/// threads share our memory). A thread that was just joined may still be
/// on its way out in the kernel: it is given up to 10 ms.
pub(crate) fn ensure_single_threaded() -> Result<(), Errno> {
    for _ in 0..100 {
        match nix::sched::unshare(nix::sched::CloneFlags::CLONE_VM) {
            Err(Errno::EINVAL) => std::thread::sleep(std::time::Duration::from_micros(100)),
            other => return other,
        }
    }
    Err(Errno::EDEADLK)
}

/// `clone(2)` with fork semantics (no new stack, SIGCHLD to the parent) and
/// the given namespace flags, once [`ensure_single_threaded`] allows it: the
/// child continues with a copy of the whole address space.
pub(crate) fn clone_process(ns_flags: libc::c_int) -> Result<Forked, Errno> {
    ensure_single_threaded()?;
    // SAFETY: the process is single-threaded, checked just above.
    unsafe { clone_unchecked(ns_flags) }
}

/// [`clone_process`] without the check.
///
/// # Safety
///
/// The calling process must be single-threaded: the child gets a copy of
/// the whole address space but only the calling thread, so a lock another
/// thread held at the clone would stay held forever in the child.
unsafe fn clone_unchecked(ns_flags: libc::c_int) -> Result<Forked, Errno> {
    // SAFETY: with a null stack pointer the raw clone syscall behaves like
    // fork(2); no pointers are passed, so no memory is shared or aliased. The
    // caller guarantees that the process is single-threaded, so no lock can
    // be held by a thread that does not exist in the child.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (ns_flags | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as i32))),
    }
}

/// Plain `fork(2)`, once [`ensure_single_threaded`] allows it.
pub(crate) fn fork() -> Result<Forked, Errno> {
    clone_process(0)
}

/// `setdomainname(2)`.
pub(crate) fn setdomainname(name: &str) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    Errno::result(ret).map(drop)
}

/// Spawns `cmd` with `f` run in the child between fork and exec (to take on
/// an identity before a hook runs), once [`ensure_single_threaded`] allows
/// it: the child may then allocate and take locks freely.
pub(crate) fn spawn_with_pre_exec<F>(
    cmd: &mut std::process::Command,
    f: F,
) -> std::io::Result<std::process::Child>
where
    F: FnMut() -> std::io::Result<()> + Send + Sync + 'static,
{
    ensure_single_threaded()?;
    // SAFETY: the process is single-threaded (checked just above, and only
    // this thread could start another before the spawn below), so no lock or
    // allocator state can be held by another thread at fork; `f` runs in the
    // child only.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, f);
    }
    cmd.spawn()
}

/// `pidfd_open(2)`: a handle on a process that cannot be confused with a
/// later process reusing the same pid.
pub(crate) fn pidfd_open(pid: Pid) -> Result<OwnedFd, Errno> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0 as libc::c_uint) };
    let fd = Errno::result(ret)? as RawFd;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(2)`.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> Result<(), Errno> {
    // SAFETY: a valid fd, a signal number, and a null siginfo (as for kill(2)).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null_mut::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    Errno::result(ret).map(drop)
}

/// Makes `fd` (a terminal) the controlling terminal of the calling session.
pub(crate) fn set_controlling_tty(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an integer argument, no memory is passed.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    Errno::result(ret).map(drop)
}

/// Sets a terminal's window size.
pub(crate) fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), Errno> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize struct, which lives on our stack for the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    Errno::result(ret).map(drop)
}

/// A terminal's window size as (rows, cols).
pub(crate) fn get_winsize(fd: BorrowedFd<'_>) -> Result<(u16, u16), Errno> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize struct into `ws`, which lives on
    // our stack for the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    Errno::result(ret).map(|_| (ws.ws_row, ws.ws_col))
}

/// Resets signal dispositions to their default and unblocks all signals:
/// the container process must not inherit what ocirun set for itself (Rust
/// ignores SIGPIPE, `run` blocks the signals it forwards) or what ocirun
/// inherited. execve resets handled signals itself; only an ignored one
/// survives it. `ignored` is the set ignored at ocirun's start (bit n-1 for
/// signal n, as /proc's SigIgn): those and SIGPIPE are reset; unknown
/// (None), every signal is.
///
/// The raw syscall, not libc's sigaction, which refuses the two signals
/// glibc keeps for itself (32 and 33): one inherited as ignored would
/// otherwise stay ignored in the container.
pub(crate) fn reset_signals(ignored: Option<u64>) -> Result<(), Errno> {
    // The kernel's struct sigaction, all zero: SIG_DFL, no flags, empty mask.
    let dfl = [0u64; 4];
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        if let Some(mask) = ignored
            && sig != libc::SIGPIPE
            && mask & (1 << (sig - 1)) == 0
        {
            continue;
        }
        // SAFETY: rt_sigaction reads one kernel sigaction struct from `dfl`
        // (32 bytes, alive for the call) and writes nothing (null old
        // action); 8 is the size of the kernel's sigset_t. Installing
        // SIG_DFL runs no code of ours in a signal context.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                dfl.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            )
        };
        Errno::result(ret)?;
    }
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    )
}

/// What ocirun's binary needs at start-up in place of Rust's runtime
/// (entry.rs): fds 0, 1 and 2 open (a closed one is opened on /dev/null, so
/// that no file ocirun opens later becomes its stdout or stderr; as std
/// does) and SIGPIPE at its default action.
pub fn start_process() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: poll reads and writes the three pollfd structs of `fds`, which
    // live on our stack for the call; a zero timeout never blocks.
    let ret = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
    for p in fds {
        let closed = if ret == -1 {
            // SAFETY: F_GETFD on a number reads the fd's flags, nothing else.
            let r = unsafe { libc::fcntl(p.fd, libc::F_GETFD) };
            r == -1 && Errno::last() == Errno::EBADF
        } else {
            p.revents & libc::POLLNVAL != 0
        };
        if closed {
            // The lowest free fd: the one that is closed.
            match nix::fcntl::open(
                "/dev/null",
                nix::fcntl::OFlag::O_RDWR,
                nix::sys::stat::Mode::empty(),
            ) {
                Ok(fd) if fd.as_raw_fd() == p.fd => drop(std::os::fd::IntoRawFd::into_raw_fd(fd)),
                _ => std::process::abort(),
            }
        }
    }
    default_sigpipe();
}

/// Sets SIGPIPE back to its default action for ocirun itself, so a closed
/// pipe ends `ocirun list | head` quietly like any other tool.
fn default_sigpipe() {
    // SAFETY: installing SIG_DFL runs no code of ours in a signal context.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// `_exit(2)`: leaves a forked child without running exit handlers or
/// flushing buffers that belong to the parent.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes an integer and never returns; it touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// `fsetxattr(2)` on an open file or directory.
pub(crate) fn fsetxattr(
    fd: BorrowedFd<'_>,
    name: &std::ffi::CStr,
    value: &[u8],
) -> Result<(), Errno> {
    // SAFETY: name is NUL-terminated, value's pointer and length describe a
    // live slice; the kernel only reads them during the call.
    let ret = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(ret).map(drop)
}

/// `lsetxattr(2)`: on a symlink itself (reached as `/proc/self/fd/<dir>/<name>`).
pub(crate) fn lsetxattr(
    path: &std::ffi::CStr,
    name: &std::ffi::CStr,
    value: &[u8],
) -> Result<(), Errno> {
    // SAFETY: both strings are NUL-terminated, value's pointer and length
    // describe a live slice; the kernel only reads them during the call.
    let ret = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(ret).map(drop)
}

/// seccomp(SECCOMP_SET_MODE_FILTER) with a BPF program of `struct sock_filter`
/// instructions; returns the listener fd when `flags` asks for one.
pub(crate) fn seccomp_set_filter(bpf: &[u8], flags: u32) -> Result<Option<OwnedFd>, Errno> {
    const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
    if bpf.is_empty()
        || !bpf
            .len()
            .is_multiple_of(std::mem::size_of::<libc::sock_filter>())
    {
        return Err(Errno::EINVAL);
    }
    // Copy into properly aligned instructions.
    let insns: Vec<libc::sock_filter> = bpf
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    // sock_fprog counts instructions in 16 bits: a longer program would be
    // cut, not refused.
    let len = libc::c_ushort::try_from(insns.len()).map_err(|_| Errno::E2BIG)?;
    let prog = libc::sock_fprog {
        len,
        filter: insns.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prog points to `insns`, which outlives the call; the kernel
    // copies the program and keeps no pointer to our memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags as libc::c_uint,
            &prog as *const libc::sock_fprog,
        )
    };
    let ret = Errno::result(ret)?;
    if flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32 != 0 {
        // SAFETY: with NEW_LISTENER the return value is a new fd that we own.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(ret as RawFd) }));
    }
    Ok(None)
}

/// Ignores SIGPIPE, so a write to a pipe whose reader is gone fails with
/// EPIPE instead of killing us (a hook need not read its stdin).
pub(crate) fn ignore_sigpipe() {
    // SAFETY: installing SIG_IGN runs no code of ours in a signal context.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// `ioctl(TIOCGPTPEER)`: opens the slave of a pty master directly from the
/// master, with no path lookup that a rootfs could redirect.
pub(crate) fn pty_peer(master: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags as an integer argument and
    // returns a new fd; no memory is passed.
    let ret = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    let fd = Errno::result(ret)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
