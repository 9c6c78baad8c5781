//! /dev: the default and the spec's device nodes (bind mounts of the
//! host's inside a user namespace) and the /dev links.

use std::ffi::OsStr;
use std::fs::Permissions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::mount::MsFlags;
use nix::sys::stat::SFlag;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount};
use rustix::fs::{AtFlags, FileType, Mode};

use super::escape::check_no_escape;
use super::mounts::mountpoint;
use super::{Plan, Root, fd_path, inroot, mnt, resolve};
use crate::error::{Context, Error, Result};

pub(super) fn setup_dev(p: &Plan, root: &Root, mounts: &[Mount]) -> Result<()> {
    // /dev reached going down only (no symlink, no `..`): nodes and links
    // are made in it by name, with no walk of their own.
    let plain = root.plain_dir(Path::new("/dev"));
    let is_plain = plain.is_some();
    let dev = match plain {
        Some(fd) => fd,
        None => root
            .mkdir_all(Path::new("/dev"), 0o755)
            .ctx(Error::Rootfs, || "create /dev in rootfs")?,
    };
    let in_dev = is_plain.then_some(&dev);
    // Whether /dev still is what `dev` holds: only a device made the
    // general way could have changed what the name leads to.
    let mut dev_kept = is_plain;
    for (path, major, minor) in crate::spec::DEFAULT_DEVICES {
        make_device(
            p,
            root,
            in_dev,
            &DeviceNode {
                path: Path::new(path),
                kind: SFlag::S_IFCHR,
                major,
                minor,
                mode: 0o666,
                uid: 0,
                gid: 0,
            },
        )?;
    }
    let linux = p.spec.linux().as_ref();
    for d in linux
        .and_then(|linux| linux.devices().as_ref())
        .into_iter()
        .flatten()
    {
        dev_kept &= make_spec_device(p, root, in_dev, d)?;
    }
    // The links go in `dev` unless a device made the general way could have
    // moved /dev: then each is made looked up from the root, as that way.
    let dev = dev_kept.then_some(dev);
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        symlink(root, dev.as_ref(), link, target)?;
    }
    // Not a dangling link where the host has no /proc/kcore (as runc).
    if mounts.iter().any(|m| m.destination() == Path::new("/proc"))
        && Path::new("/proc/kcore").exists()
    {
        symlink(root, dev.as_ref(), "/dev/core", "/proc/kcore")?;
    }
    if mounts
        .iter()
        .any(|m| m.destination() == Path::new("/dev/pts"))
    {
        let _ = match &dev {
            Some(dev) => rustix::fs::unlinkat(dev, "ptmx", AtFlags::empty()),
            None => root.remove_file(Path::new("/dev/ptmx")),
        };
        symlink(root, dev.as_ref(), "/dev/ptmx", "pts/ptmx")?;
    }
    Ok(())
}

/// The link `link` (in /dev: by its name in `dev` when given) -> `target`,
/// unless something is there.
fn symlink(root: &Root, dev: Option<&OwnedFd>, link: &str, target: &str) -> Result<()> {
    let made = match (dev, link.strip_prefix("/dev/")) {
        (Some(dev), Some(name)) => rustix::fs::symlinkat(target, dev, name),
        _ => root.symlink(Path::new(link), Path::new(target)),
    };
    match made {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e).ctx(Error::Rootfs, || {
            format!("symlink {link} -> {target} in rootfs")
        }),
    }
}

fn make_spec_device(p: &Plan, root: &Root, dev: Option<&OwnedFd>, d: &LinuxDevice) -> Result<bool> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::Spec(format!(
                "device {} has type \"a\", which is only valid in cgroup rules",
                d.path().display()
            )));
        }
    };
    if !d.path().starts_with("/dev") {
        return Err(Error::Spec(format!(
            "device path {} is not under /dev",
            d.path().display()
        )));
    }
    make_device(
        p,
        root,
        dev,
        &DeviceNode {
            path: d.path(),
            kind,
            major: d.major(),
            minor: d.minor(),
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        },
    )
}

/// A device node to make in the container's /dev: its path there, type
/// (character, block or fifo), numbers, permission bits and owner.
struct DeviceNode<'a> {
    path: &'a Path,
    kind: SFlag,
    major: i64,
    minor: i64,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// Makes `node`; `dev`, an fd on /dev reached with no symlink and no `..`
/// (`RootDir::plain_dir`), serves for a node right in /dev. Whether it
/// went that way.
fn make_device(p: &Plan, root: &Root, dev: Option<&OwnedFd>, node: &DeviceNode) -> Result<bool> {
    let in_dev = node
        .path
        .file_name()
        .filter(|_| node.path.parent() == Some(Path::new("/dev")));
    match (dev, in_dev) {
        (Some(dev), Some(name)) => make_in_dev(p, root, dev, name, node).map(|()| true),
        _ => make_device_walked(p, root, node).map(|()| false),
    }
}

/// `node`, the entry `name` of /dev (`dev`, reached going down only): made
/// by name in it.
fn make_in_dev(
    p: &Plan,
    root: &Root,
    dev: &OwnedFd,
    name: &OsStr,
    node: &DeviceNode,
) -> Result<()> {
    let &DeviceNode {
        path,
        kind,
        major,
        minor,
        mode,
        uid,
        gid,
    } = node;
    // With /dev reached going down, only a symlink at `name` could make the
    // walk of `check_no_escape` climb: walk it then.
    match rustix::fs::statat(dev, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => {}
        r => {
            if r.is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink) {
                check_no_escape(root, path)?;
            }
            let _ = rustix::fs::unlinkat(dev, name, AtFlags::empty());
        }
    }
    if p.userns {
        // No mknod in a user namespace: bind the host's node instead.
        match inroot::create_file_in(dev, name, 0o644) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => {
                return Err(e).ctx(Error::Rootfs, || {
                    format!("create mountpoint {} in rootfs", path.display())
                });
            }
        }
        let target = root.resolve(path).ctx(Error::Rootfs, || {
            format!("resolve mountpoint {} in rootfs", path.display())
        })?;
        return bind_host_node(path, &target);
    }
    let file_type = file_type(kind);
    let rdev = libc::makedev(major as u32, minor as u32);
    rustix::fs::mknodat(dev, name, file_type, Mode::from_raw_mode(mode), rdev)
        .ctx(Error::Rootfs, || {
            format!("mknod {} in rootfs", path.display())
        })?;
    // The node is the init's (root's, or the group of a setgid /dev): chown
    // only to another owner. mknod gives the mode less the umask (the
    // init's is 0) or what a default ACL of /dev allows, and chown clears
    // setuid and setgid: set the exact mode only when the node lacks it.
    let stat = || rustix::fs::statat(dev, name, AtFlags::SYMLINK_NOFOLLOW).ok();
    let mut st = stat();
    if !st.is_some_and(|st| st.st_uid == uid && st.st_gid == gid) {
        rustix::fs::chownat(
            dev,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .ctx(Error::Rootfs, || {
            format!("chown {} to {uid}:{gid}", path.display())
        })?;
        st = stat();
    }
    match st {
        Some(st)
            if st.st_mode & 0o7777 == mode && FileType::from_raw_mode(st.st_mode) == file_type => {}
        _ => chmod(root, path, mode)?,
    }
    Ok(())
}

fn file_type(kind: SFlag) -> FileType {
    match kind {
        SFlag::S_IFBLK => FileType::BlockDevice,
        SFlag::S_IFIFO => FileType::Fifo,
        _ => FileType::CharacterDevice,
    }
}

/// Binds the host's node of `path` (in /dev) on `target`.
fn bind_host_node(path: &Path, target: &OwnedFd) -> Result<()> {
    let host = Path::new("/dev").join(path.strip_prefix("/dev").unwrap_or(path));
    mnt(
        Some(&host.to_string_lossy()),
        &fd_path(target)[..],
        None,
        MsFlags::MS_BIND,
        None,
    )
    .ctx(Error::Rootfs, || {
        format!("bind {} on {}", host.display(), path.display())
    })
}

/// Sets the exact mode of `path` through an O_PATH handle on it.
fn chmod(root: &Root, path: &Path, mode: u32) -> Result<()> {
    let handle = resolve(root, path)?;
    std::fs::set_permissions(fd_path(&handle), Permissions::from_mode(mode))
        .ctx(Error::Rootfs, || {
            format!("chmod {} to {mode:o}", path.display())
        })
}

/// `node` anywhere under /dev: the path walked by `check_no_escape`, every
/// step looked up from the root.
fn make_device_walked(p: &Plan, root: &Root, node: &DeviceNode) -> Result<()> {
    let &DeviceNode {
        path,
        kind,
        major,
        minor,
        mode,
        uid,
        gid,
    } = node;
    check_no_escape(root, path)?;
    if let Some(parent) = path.parent() {
        root.mkdir_all(parent, 0o755).ctx(Error::Rootfs, || {
            format!("create {} in rootfs", parent.display())
        })?;
    }
    let _ = root.remove_file(path);
    if p.userns {
        // No mknod in a user namespace: bind the host's node instead.
        let target = mountpoint(root, path, false)?;
        return bind_host_node(path, &target);
    }
    let dev = libc::makedev(major as u32, minor as u32);
    let file_type = file_type(kind);
    root.mknod(path, file_type, mode, dev)
        .ctx(Error::Rootfs, || {
            format!("mknod {} in rootfs", path.display())
        })?;
    let handle = resolve(root, path)?;
    nix::unistd::fchownat(
        &handle,
        "",
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .ctx(Error::Rootfs, || {
        format!("chown {} to {uid}:{gid}", path.display())
    })?;
    // mknod applies the umask; set the exact mode through the O_PATH handle.
    std::fs::set_permissions(fd_path(&handle), Permissions::from_mode(mode))
        .ctx(Error::Rootfs, || {
            format!("chmod {} to {mode:o}", path.display())
        })
}
