//! Per-process attributes the kernel keeps across execve: execution
//! domain (personality), I/O priority, scheduling policy and NUMA memory
//! policy. Thin wrappers over the raw system calls; the values are built and
//! checked in `process::attrs`.

use nix::errno::Errno;

/// `personality(2)`: sets the execution domain (e.g. `PER_LINUX32`).
pub(crate) fn set_personality(persona: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: personality takes one integer and touches no memory of ours.
    let ret = unsafe { libc::personality(persona) };
    Errno::result(ret).map(drop)
}

/// `ioprio_set(IOPRIO_WHO_PROCESS, 0, prio)`: the calling process's I/O
/// priority (`class << 13 | data`), inherited by its children.
pub(crate) fn ioprio_set_self(prio: i32) -> Result<(), Errno> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    // SAFETY: three integer arguments, no memory is passed.
    let ret = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, prio) };
    Errno::result(ret).map(drop)
}

/// `struct sched_attr` as of Linux 5.3 (`SCHED_ATTR_SIZE_VER1`, 56 bytes).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SchedAttr {
    pub size: u32,
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
    pub util_min: u32,
    pub util_max: u32,
}

/// `sched_setattr(0, attr, 0)`: the calling thread's policy and parameters.
pub(crate) fn sched_setattr_self(attr: &SchedAttr) -> Result<(), Errno> {
    let mut a = *attr;
    a.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `a` is a properly laid out sched_attr on our stack whose size
    // field says how many bytes the kernel may read; it outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0 as libc::pid_t,
            &a as *const SchedAttr,
            0 as libc::c_uint,
        )
    };
    Errno::result(ret).map(drop)
}

/// `set_mempolicy(2)`: `mode` (with its flags or'ed in) and a node mask of
/// `maxnode` bits held in `mask`.
pub(crate) fn set_mempolicy(mode: i32, mask: &[libc::c_ulong], maxnode: u64) -> Result<(), Errno> {
    let bits = (mask.len() * libc::c_ulong::BITS as usize) as u64;
    if maxnode > bits + 1 {
        return Err(Errno::EINVAL);
    }
    let ptr = if mask.is_empty() {
        std::ptr::null()
    } else {
        mask.as_ptr()
    };
    // SAFETY: the kernel reads at most `maxnode - 1` bits from `mask`, which
    // holds `bits >= maxnode - 1` bits (checked above) and outlives the call;
    // a null mask goes with an empty node set.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_set_mempolicy,
            mode as libc::c_int,
            ptr,
            maxnode as libc::c_ulong,
        )
    };
    Errno::result(ret).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sched_attr_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<SchedAttr>(), 56);
    }
}
