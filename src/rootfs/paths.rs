//! After pivot_root: readonly paths, masked paths (a verified /dev/null or
//! a read-only tmpfs) and a read-only root.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag};
use oci_spec::runtime::Spec;

use super::Root;
use super::mounts::remount_bind;
use crate::error::{Context, Error, Result};
use crate::sys::mount;

/// After pivot_root: readonly paths, masked paths, then a read-only root.
pub fn finalize(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    let readonly = linux.and_then(|linux| linux.readonly_paths().as_ref());
    let masked = linux.and_then(|linux| linux.masked_paths().as_ref());
    if readonly.is_some_and(|r| !r.is_empty()) || masked.is_some_and(|m| !m.is_empty()) {
        let root = Root::open(Path::new("/")).ctx(Error::Rootfs, || "open the container root")?;
        for path in readonly.into_iter().flatten() {
            readonly_path(&root, path)?;
        }
        if let Some(masked) = masked.filter(|m| !m.is_empty()) {
            let null = open_dev_null()?;
            for path in masked {
                mask_path(&root, &null, path)?;
            }
        }
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        remount_bind("/", MsFlags::MS_RDONLY).ctx(Error::Rootfs, || "remount / read-only")?;
    }
    Ok(())
}

/// Makes `path` (resolved inside the container root, no symlink leaving it)
/// read-only with everything mounted under it: a detached clone of the tree
/// there (`open_tree`), made read-only (`mount_setattr`, recursive) and
/// moved back onto the same handle. Nothing is looked up by name between
/// the resolution and the mount, so a swap cannot redirect it.
fn readonly_path(root: &Root, path: &str) -> Result<()> {
    let Some(target) = resolve_if_exists(root, path)
        .ctx(Error::Rootfs, || format!("resolve readonly path {path}"))?
    else {
        return Ok(());
    };
    let tree = mount::clone_tree(target.as_fd(), true).ctx(Error::Rootfs, || {
        format!("clone the mounts at readonly path {path}")
    })?;
    mount::set_readonly_recursive(tree.as_fd()).ctx(Error::Rootfs, || {
        format!("make readonly path {path} read-only")
    })?;
    mount::move_onto(tree.as_fd(), target.as_fd())
        .ctx(Error::Rootfs, || format!("mount readonly path {path}"))
}

/// `root.resolve(path)`, with a missing path as None (readonly and masked
/// paths that an image does not have are skipped, as runc does).
fn resolve_if_exists(root: &Root, path: &str) -> Result<Option<OwnedFd>, rustix::io::Errno> {
    match root.resolve(Path::new(path)) {
        Ok(h) => Ok(Some(h)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Masking binds /dev/null over paths: it must be the real null device, not
/// a file, a symlink or another device the rootfs put there (the
/// CVE-2025-31133 class). Opened without following a symlink and checked
/// through that fd, which is what gets bound.
fn open_dev_null() -> Result<std::os::fd::OwnedFd> {
    let fd = open(
        "/dev/null",
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(Error::Rootfs, || "open /dev/null")?;
    let st = nix::sys::stat::fstat(&fd).ctx(Error::Rootfs, || "stat /dev/null")?;
    let is_chr = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    if !is_chr || st.st_rdev != libc::makedev(1, 3) {
        return Err(Error::Rootfs(
            "refusing to mask paths with /dev/null: it is not the 1:3 character device".into(),
        ));
    }
    Ok(fd)
}

/// A fresh read-only tmpfs onto `target` (a masked directory).
fn ro_tmpfs_on(target: BorrowedFd<'_>) -> std::result::Result<(), Errno> {
    let m = mount::new_instance("tmpfs", rustix::mount::MountAttrFlags::MOUNT_ATTR_RDONLY)?;
    mount::move_onto(m.as_fd(), target)
}

/// Masks `path` (resolved inside the container root): the verified
/// /dev/null over a file, a read-only tmpfs over a directory.
fn mask_path(root: &Root, null: &impl AsFd, path: &str) -> Result<()> {
    let Some(target) = resolve_if_exists(root, path)
        .ctx(Error::Rootfs, || format!("resolve masked path {path}"))?
    else {
        return Ok(());
    };
    let st =
        nix::sys::stat::fstat(&target).ctx(Error::Rootfs, || format!("stat masked path {path}"))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
        ro_tmpfs_on(target.as_fd()).ctx(Error::Rootfs, || {
            format!("mask {path} with a read-only tmpfs")
        })
    } else {
        mount::bind_fd(null.as_fd(), target.as_fd())
            .ctx(Error::Rootfs, || format!("mask {path} with /dev/null"))
    }
}
