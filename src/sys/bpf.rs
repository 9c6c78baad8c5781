//! The few `bpf(2)` commands the device cgroup needs on cgroup v2: load a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program, attach it to a cgroup directory,
//! list what is attached there, open an attached program by id and detach
//! it. The `bpf_attr` layouts are the kernel's (include/uapi/linux/bpf.h),
//! trimmed to the fields each command reads; the kernel zero-fills the rest.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;

/// `BPF_PROG_TYPE_CGROUP_DEVICE`.
pub(crate) const PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// The `BPF_CGROUP_DEVICE` attach type.
pub(crate) const ATTACH_CGROUP_DEVICE: u32 = 6;
/// `BPF_F_ALLOW_MULTI`: more than one program per cgroup, all must allow.
pub(crate) const F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// One raw bpf(2) call with `attr` (a `#[repr(C)]` prefix of `union bpf_attr`).
fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> Result<libc::c_long, Errno> {
    // SAFETY: `attr` is a live, exclusively borrowed #[repr(C)] struct laid
    // out as the prefix of `union bpf_attr` that `cmd` reads, and its size
    // is passed alongside; every pointer stored in it (instructions,
    // license, log buffer, id array) is owned by the caller and outlives
    // the call. The kernel copies the struct in, and writes back only into
    // it and into the buffers it points to, within their stated lengths.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    Errno::result(ret)
}

/// Takes ownership of an fd that bpf(2) just returned.
fn own(ret: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just installed this fd for us; nobody else owns it.
    unsafe { OwnedFd::from_raw_fd(ret as RawFd) }
}

/// `BPF_PROG_LOAD` of a cgroup device program (`insns` are encoded
/// `struct bpf_insn`s). With `log`, the verifier writes its log there
/// (NUL-terminated) at level 1; without, the load is quiet.
pub(crate) fn prog_load_cgroup_device(
    insns: &[u64],
    license: &CStr,
    name: &str,
    log: Option<&mut [u8]>,
) -> Result<OwnedFd, Errno> {
    let mut attr = ProgLoadAttr {
        prog_type: PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| Errno::E2BIG)?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    // The name is at most 15 bytes plus the NUL the zeroed array provides.
    for (d, s) in attr.prog_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    if let Some(buf) = log {
        attr.log_level = 1;
        attr.log_size = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        attr.log_buf = buf.as_mut_ptr() as u64;
    }
    bpf(BPF_PROG_LOAD, &mut attr).map(own)
}

/// `BPF_PROG_ATTACH` of `prog` to the cgroup directory `target`.
pub(crate) fn prog_attach(
    target: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    attach_type: u32,
    flags: u32,
) -> Result<(), Errno> {
    let mut attr = AttachAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        attach_flags: flags,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

/// `BPF_PROG_DETACH` of `prog` from the cgroup directory `target`.
pub(crate) fn prog_detach(
    target: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    attach_type: u32,
) -> Result<(), Errno> {
    let mut attr = AttachAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        ..Default::default()
    };
    bpf(BPF_PROG_DETACH, &mut attr).map(drop)
}

/// `BPF_PROG_QUERY`: the ids of the programs attached directly to `target`
/// with `attach_type` (not the inherited ones).
pub(crate) fn prog_query(target: BorrowedFd<'_>, attach_type: u32) -> Result<Vec<u32>, Errno> {
    let mut cap = 64usize;
    for _ in 0..8 {
        let mut ids = vec![0u32; cap];
        let mut attr = QueryAttr {
            target_fd: target.as_raw_fd() as u32,
            attach_type,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: cap as u32,
            ..Default::default()
        };
        match bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {
                ids.truncate((attr.prog_cnt as usize).min(cap));
                return Ok(ids);
            }
            // More programs than room: the kernel told us how many.
            Err(Errno::ENOSPC) => cap = (attr.prog_cnt as usize).max(cap * 2),
            Err(e) => return Err(e),
        }
    }
    Err(Errno::ENOSPC)
}

/// `BPF_PROG_GET_FD_BY_ID`: an fd for a loaded program.
pub(crate) fn prog_get_fd_by_id(id: u32) -> Result<OwnedFd, Errno> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        ..Default::default()
    };
    bpf(BPF_PROG_GET_FD_BY_ID, &mut attr).map(own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layouts_match_the_kernel() {
        // Offsets from union bpf_attr in include/uapi/linux/bpf.h.
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, insns), 8);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(AttachAttr, attach_flags), 12);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_ids), 16);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_cnt), 24);
    }
}
