//! The new mount API (Linux 5.12): detached clones of mount trees
//! (`open_tree`), new filesystem instances (`fsopen`/`fsmount`), their
//! attributes (`mount_setattr`) and moves onto a target fd (`move_mount`).
//! Everything works on fds, so nothing is looked up by name again between
//! the checks on them and the mount.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags, fsconfig_create,
    fsmount, fsopen, move_mount, open_tree,
};

fn errno(e: rustix::io::Errno) -> Errno {
    Errno::from_raw(e.raw_os_error())
}

/// A detached clone of the mount at `src` (with the mounts under it when
/// `recursive`), to be moved somewhere with [`move_onto`].
pub(crate) fn clone_tree(src: BorrowedFd<'_>, recursive: bool) -> Result<OwnedFd, Errno> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE
        | OpenTreeFlags::OPEN_TREE_CLOEXEC
        | OpenTreeFlags::AT_EMPTY_PATH;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    open_tree(src, "", flags).map_err(errno)
}

/// Mounts the detached mount `tree` onto `target`, both fds.
pub(crate) fn move_onto(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<(), Errno> {
    move_mount(
        tree,
        "",
        target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(errno)
}

/// Binds the file or directory `src` (any fd on it) onto `target` with the
/// new mount API: no path is looked up again, so nothing can be swapped in
/// between the checks on these fds and the mount.
pub(crate) fn bind_fd(src: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<(), Errno> {
    move_onto(clone_tree(src, false)?.as_fd(), target)
}

/// A new, detached instance of the filesystem `fstype` (no source, default
/// options) with the mount attributes `attr`.
pub(crate) fn new_instance(fstype: &str, attr: MountAttrFlags) -> Result<OwnedFd, Errno> {
    let fs = fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC).map_err(errno)?;
    fsconfig_create(&fs).map_err(errno)?;
    fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attr).map_err(errno)
}

/// What one `mount_setattr(2)` call changes: `set` and `clear` are
/// `MOUNT_ATTR_*` bits (an access-time change needs `MOUNT_ATTR__ATIME` in
/// `clear`), `userns` the user namespace of a `MOUNT_ATTR_IDMAP`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MountAttr<'a> {
    pub set: u64,
    pub clear: u64,
    pub userns: Option<BorrowedFd<'a>>,
}

/// `mount_setattr(2)` on the mount `mnt` refers to (any fd on it: an
/// `open_tree` clone or an O_PATH handle on its root), with every mount
/// under it too when `recursive`.
pub(crate) fn setattr(
    mnt: BorrowedFd<'_>,
    recursive: bool,
    attr: &MountAttr<'_>,
) -> Result<(), Errno> {
    let raw = libc::mount_attr {
        attr_set: attr.set,
        attr_clr: attr.clear,
        propagation: 0,
        userns_fd: attr.userns.map_or(0, |fd| fd.as_raw_fd() as u64),
    };
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: the path is an empty NUL-terminated string, `raw` lives on our
    // stack for the call and its size is passed; the kernel only reads it.
    // The fds are borrowed, so they stay open for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            flags as libc::c_uint,
            &raw as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    Errno::result(ret).map(drop)
}

/// Makes the mount `mnt` (from `open_tree`) read-only.
pub(crate) fn set_readonly(mnt: BorrowedFd<'_>) -> Result<(), Errno> {
    set_readonly_flags(mnt, false)
}

/// As [`set_readonly`], for the whole tree of mounts under `mnt`.
pub(crate) fn set_readonly_recursive(mnt: BorrowedFd<'_>) -> Result<(), Errno> {
    set_readonly_flags(mnt, true)
}

fn set_readonly_flags(mnt: BorrowedFd<'_>, recursive: bool) -> Result<(), Errno> {
    setattr(
        mnt,
        recursive,
        &MountAttr {
            set: libc::MOUNT_ATTR_RDONLY,
            ..MountAttr::default()
        },
    )
}
