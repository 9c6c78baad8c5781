//! The container's root: pivot_root (or MS_MOVE + chroot with `--no-pivot`,
//! a plain chroot without a mount namespace), and the unmount of what such a
//! container left below its rootfs.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, umount2};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, fchdir, pivot_root};

use super::mnt;
use crate::error::{Context, Error, Result};

/// pivot_root needs the rootfs's parent mount not to be shared.
pub(super) fn make_parent_private(rootfs: &Path) -> Result<()> {
    let info = crate::sys::fd::read_text("/proc/self/mountinfo")
        .ctx(Error::Rootfs, || "read /proc/self/mountinfo")?;
    let best = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|mp| rootfs.starts_with(mp))
        .max_by_key(|mp| mp.len())
        .unwrap_or("/")
        .to_string();
    mnt(None, best.as_str(), None, MsFlags::MS_PRIVATE, None)
        .ctx(Error::Rootfs, || format!("make {best} private"))
}

pub(super) fn do_pivot(rootfs: &Path) -> Result<()> {
    let old = open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(Error::Rootfs, || "open /")?;
    let new = open(
        rootfs,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(Error::Rootfs, || format!("open {}", rootfs.display()))?;
    fchdir(&new).ctx(Error::Rootfs, || format!("chdir {}", rootfs.display()))?;
    pivot_root(".", ".").ctx(Error::Rootfs, || format!("pivot_root {}", rootfs.display()))?;
    // The old root is now stacked under the new one: detach it without letting
    // the unmount propagate back to the host.
    fchdir(&old).ctx(Error::Rootfs, || "chdir to the old root")?;
    mnt(None, ".", None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None)
        .ctx(Error::Rootfs, || "make the old root rslave")?;
    umount2(".", MntFlags::MNT_DETACH).ctx(Error::Rootfs, || "unmount the old root")?;
    chdir("/").ctx(Error::Rootfs, || "chdir /")
}

/// The root of a container without a mount namespace: a plain chroot.
pub(super) fn chroot_into(rootfs: &Path) -> Result<()> {
    chdir(rootfs).ctx(Error::Rootfs, || format!("chdir {}", rootfs.display()))?;
    nix::unistd::chroot(".").ctx(Error::Rootfs, || format!("chroot {}", rootfs.display()))?;
    chdir("/").ctx(Error::Rootfs, || "chdir /")
}

/// Takes down whatever is mounted at or below `rootfs` in our mount
/// namespace (a container that had none of its own left its mounts there),
/// deepest first, each detached.
pub fn unmount_below(rootfs: &Path) -> Result<()> {
    let info = crate::sys::fd::read_text("/proc/self/mountinfo")
        .ctx(Error::Rootfs, || "read /proc/self/mountinfo")?;
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|mp| PathBuf::from(mp.replace("\\040", " ")))
        .filter(|mp| mp.starts_with(rootfs) && mp != rootfs)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for mp in points {
        match umount2(&mp, MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
            Err(e) => {
                return Err(e).ctx(Error::Rootfs, || format!("unmount {}", mp.display()));
            }
        }
    }
    Ok(())
}

pub(super) fn move_root(rootfs: &Path) -> Result<()> {
    chdir(rootfs).ctx(Error::Rootfs, || format!("chdir {}", rootfs.display()))?;
    mnt(
        Some(&rootfs.to_string_lossy()),
        "/",
        None,
        MsFlags::MS_MOVE,
        None,
    )
    .ctx(Error::Rootfs, || format!("move {} to /", rootfs.display()))?;
    nix::unistd::chroot(".").ctx(Error::Rootfs, || format!("chroot {}", rootfs.display()))?;
    chdir("/").ctx(Error::Rootfs, || "chdir /")
}
