//! The container's root filesystem: propagation, the mounts of config.json,
//! devices and /dev links, pivot_root (or MS_MOVE + chroot), then readonly and
//! masked paths and a read-only root. Every path inside the rootfs is resolved
//! by the kernel inside it (openat2 RESOLVE_IN_ROOT, `inroot`), so no symlink
//! or `..` in the rootfs can make a mount or a device node land outside it.
//!
//! This file holds the sequence (`prepare`, then `finalize` after the
//! pivot) and the helpers its steps share; each step is in its own file:
//! the mounts of config.json (`mounts.rs`), /dev (`dev.rs`), pivot_root and
//! its alternatives (`pivot.rs`), readonly and masked paths (`paths.rs`),
//! and the check that a destination stays inside the rootfs (`escape.rs`).

pub mod idmap;
pub mod inroot;
pub mod options;
pub mod procfs;

mod dev;
mod escape;
mod mounts;
mod paths;
mod pivot;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use oci_spec::runtime::Spec;

use self::inroot::RootDir as Root;

use crate::cgroups::Hierarchy;
use crate::error::{Context, Error, Result};

use dev::setup_dev;
use mounts::mount_one;
pub use options::propagation;
pub use paths::finalize;
pub use pivot::unmount_below;
use pivot::{chroot_into, do_pivot, make_parent_private, move_root};

/// `rootfsPropagation` to its flags (checked at validation time).
pub fn propagation_flag(word: &str) -> Result<MsFlags> {
    propagation(word).ok_or_else(|| {
        Error::Spec(format!(
            "rootfsPropagation {word:?} is not a propagation mode"
        ))
    })
}

/// Everything the rootfs steps need to know.
pub struct Plan<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    /// In a new user namespace: devices are bind-mounted, not created.
    pub userns: bool,
    /// In a new cgroup namespace: `cgroup` mounts are real cgroup mounts.
    pub cgroupns: bool,
    pub cgroups: &'a [Hierarchy],
    pub no_pivot: bool,
    /// The container has a mount namespace of its own (new or joined).
    /// Without one it runs in the runtime's, as with runc: its mounts are
    /// made there (and `delete` takes them down), the root is a chroot.
    pub mountns: bool,
}

pub(super) fn fd_path(h: &impl AsFd) -> String {
    format!("/proc/self/fd/{}", h.as_fd().as_raw_fd())
}

pub(super) fn mnt<P: ?Sized + nix::NixPath>(
    src: Option<&str>,
    target: &P,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> std::result::Result<(), Errno> {
    mount(src, target, fstype, flags, data)
}

/// Steps before and including pivot_root, in spec order. `before_pivot` runs
/// once the mounts and devices are in place (the create hooks' moment).
pub fn prepare(p: &Plan, before_pivot: &mut dyn FnMut() -> Result<()>) -> Result<()> {
    let rootfs = p.rootfs;
    let prop = match p
        .spec
        .linux()
        .as_ref()
        .and_then(|linux| linux.rootfs_propagation().clone())
    {
        Some(word) => propagation_flag(&word)?,
        None => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    // The host's mounts are not ours to change.
    if p.mountns {
        // An unbindable tree could not be bound onto the rootfs: until the
        // pivot it is a slave (nothing flows back to the host), and the new /
        // becomes unbindable after it.
        let first = if prop.contains(MsFlags::MS_UNBINDABLE) {
            MsFlags::MS_SLAVE
        } else {
            prop
        };
        mnt(None, "/", None, first | MsFlags::MS_REC, None).ctx(
            Error::Rootfs,
            || "set propagation of / in the container's mount namespace",
        )?;
        if prop.contains(MsFlags::MS_SHARED) {
            make_parent_private(rootfs)?;
        }
        mnt(
            Some(&rootfs.to_string_lossy()),
            rootfs,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .ctx(Error::Rootfs, || {
            format!("bind rootfs {} onto itself", rootfs.display())
        })?;
    }
    let root = Root::open(rootfs).ctx(Error::Rootfs, || {
        format!("open rootfs {}", rootfs.display())
    })?;

    let mounts = p.spec.mounts().as_deref().unwrap_or_default();
    // Opened for the first idmapped mount.
    let mut procfs = None;
    for m in mounts {
        mount_one(p, &root, m, &mut procfs)?;
    }
    drop(procfs);
    let dev_is_bound = mounts.iter().any(|m| {
        m.destination() == Path::new("/dev")
            && options::parse(m.options().as_deref().unwrap_or_default()).is_ok_and(|o| o.is_bind())
    });
    if !dev_is_bound {
        setup_dev(p, &root, mounts)?;
    }
    // The root itself is always there.
    if let Some(process) = p
        .spec
        .process()
        .as_ref()
        .filter(|pr| pr.cwd() != Path::new("/"))
    {
        root.mkdir_all(process.cwd(), 0o755)
            .ctx(Error::Rootfs, || {
                format!("create cwd {} in rootfs", process.cwd().display())
            })?;
    }
    drop(root);
    before_pivot()?;
    if !p.mountns {
        return chroot_into(rootfs);
    }
    if p.no_pivot {
        move_root(rootfs)?;
    } else {
        do_pivot(rootfs)?;
    }
    if prop.intersects(MsFlags::MS_SHARED | MsFlags::MS_PRIVATE | MsFlags::MS_UNBINDABLE) {
        mnt(None, "/", None, prop, None).ctx(Error::Rootfs, || "set propagation of the new /")?;
    }
    Ok(())
}

pub(super) fn resolve(root: &Root, dest: &Path) -> Result<OwnedFd> {
    root.resolve(dest).ctx(Error::Rootfs, || {
        format!("resolve {} in rootfs", dest.display())
    })
}

/// Whether a libpathrs error is ENOENT.
pub(crate) fn is_enoent(e: &pathrs::error::Error) -> bool {
    matches!(
        e.kind(),
        pathrs::error::ErrorKind::OsError(Some(libc::ENOENT))
    )
}
