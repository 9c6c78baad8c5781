//! Our own binary must never be writable from inside a container (the
//! CVE-2019-5736 class). The init and the `exec` process are forks of
//! ocirun, so until they execve the container's program their
//! `/proc/<pid>/exe` is ocirun's binary; a process of the container that
//! opens it (or gets the kernel to run it, with a `#!/proc/self/exe`
//! program) could reopen it for writing once ocirun has exited. So before
//! `create`, `run` and `exec` fork anything, ocirun re-executes itself from
//! a read-only view of its binary: a detached clone of the binary's mount
//! made read-only (`open_tree` + `mount_setattr`, no copy), or, where the
//! kernel or our privileges do not allow that, a sealed memfd copy. A
//! binary that already runs from a read-only mount or a sealed memfd is
//! used as it is.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, SealFlag, fcntl, open};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{FsFlags, fstatvfs};

use crate::error::{Context, Error, Result};
use crate::sys::mount;

const SELF_EXE: &str = "/proc/self/exe";

/// Whether a write through /proc/<pid>/exe would fail: the file is on a
/// read-only mount or is a memfd sealed against writes.
fn is_protected(exe: &impl AsFd) -> bool {
    fstatvfs(exe).is_ok_and(|s| s.flags().contains(FsFlags::ST_RDONLY))
        || fcntl(exe.as_fd(), FcntlArg::F_GET_SEALS)
            .is_ok_and(|s| SealFlag::from_bits_truncate(s).contains(SealFlag::F_SEAL_WRITE))
}

/// Whether the command line `args` (the program name first) may name a
/// command that forks into a container (`create`, `run`, `exec`): true when
/// any argument is one of those words. A superset of what the parser
/// dispatches to them (they have no aliases), so `main` can re-execute
/// before parsing: the re-executed process parses the line anyway.
pub fn may_enter_container<I, A>(args: I) -> bool
where
    I: IntoIterator<Item = A>,
    A: AsRef<std::ffi::OsStr>,
{
    args.into_iter()
        .skip(1)
        .any(|a| matches!(a.as_ref().as_encoded_bytes(), b"create" | b"run" | b"exec"))
}

/// Re-executes ocirun from a read-only view of its binary unless it already
/// runs from one; returns only when no re-exec was needed.
pub fn run_from_read_only_binary() -> Result<()> {
    let exe = open(SELF_EXE, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(Error::Security, || format!("open {SELF_EXE}"))?;
    if is_protected(&exe) {
        return Ok(());
    }
    let view = match read_only_clone(&exe) {
        Ok(fd) => fd,
        Err(clone_err) => sealed_copy(&exe).map_err(|e| {
            Error::Security(format!(
                "make a read-only copy of {SELF_EXE}: clone mount: {clone_err}, sealed memfd: {e}"
            ))
        })?,
    };
    drop(exe);
    let cstrings = |v: Vec<Vec<u8>>| -> Result<Vec<CString>> {
        v.into_iter()
            .map(|b| {
                CString::new(b).map_err(|_| Error::Security("argument with a NUL byte".into()))
            })
            .collect()
    };
    let argv = cstrings(std::env::args_os().map(|a| a.into_vec()).collect())?;
    let envp = cstrings(
        std::env::vars_os()
            .map(|(k, v)| {
                let mut kv = k.into_vec();
                kv.push(b'=');
                kv.extend(v.into_vec());
                kv
            })
            .collect(),
    )?;
    let empty: &CStr = c"";
    let e = nix::unistd::execveat(
        view,
        empty,
        &argv,
        &envp,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .unwrap_err();
    Err(Error::Security(format!(
        "re-exec from a read-only copy of {SELF_EXE}: {e}"
    )))
}

/// A detached clone of the mount holding our binary (`exe`), rooted at the
/// binary and made read-only.
fn read_only_clone(exe: &OwnedFd) -> std::result::Result<OwnedFd, Errno> {
    let fd = mount::clone_tree(exe.as_fd(), false)?;
    mount::set_readonly(fd.as_fd())?;
    if !is_protected(&fd) {
        return Err(Errno::EROFS);
    }
    Ok(fd)
}

/// A memfd copy of our binary sealed against every change.
fn sealed_copy(exe: &OwnedFd) -> std::result::Result<OwnedFd, Errno> {
    let m = memfd_create(
        c"ocirun",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )?;
    let io = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let mut from = std::fs::File::from(exe.try_clone().map_err(io)?);
    let mut to = std::fs::File::from(m.try_clone().map_err(io)?);
    std::io::copy(&mut from, &mut to).map_err(io)?;
    fcntl(
        m.as_fd(),
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SEAL
                | SealFlag::F_SEAL_SHRINK
                | SealFlag::F_SEAL_GROW
                | SealFlag::F_SEAL_WRITE,
        ),
    )?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::may_enter_container;

    #[test]
    fn every_line_that_reaches_create_run_or_exec_is_seen() {
        for line in [
            "ocirun create c1",
            "ocirun --root /r run -d c1",
            "ocirun --log /l --log-format json exec -t c1 sh",
            "ocirun --root=/r exec c1 true",
            "ocirun run --bundle b run",
        ] {
            assert!(may_enter_container(line.split(' ')), "{line}");
        }
        for line in [
            "ocirun state c1",
            "ocirun delete --force c1",
            "ocirun spec",
            "run",
            "ocirun list",
            "ocirun kill c1 KILL",
        ] {
            assert!(!may_enter_container(line.split(' ')), "{line}");
        }
    }
}
