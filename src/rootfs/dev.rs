//! /dev: the default and the spec's device nodes (bind mounts of the
//! host's inside a user namespace) and the /dev links.

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::mount::MsFlags;
use nix::sys::stat::SFlag;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount};
use rustix::fs::FileType;

use super::escape::check_no_escape;
use super::mounts::mountpoint;
use super::{Plan, Root, fd_path, mnt, resolve};
use crate::error::{Context, Error, Result};

pub(super) fn setup_dev(p: &Plan, root: &Root, mounts: &[Mount]) -> Result<()> {
    root.mkdir_all(Path::new("/dev"), 0o755)
        .ctx(Error::Rootfs, || "create /dev in rootfs")?;
    for (path, major, minor) in crate::spec::DEFAULT_DEVICES {
        make_device(
            p,
            root,
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
        make_spec_device(p, root, d)?;
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        symlink(root, link, target)?;
    }
    // Not a dangling link where the host has no /proc/kcore (as runc).
    if mounts.iter().any(|m| m.destination() == Path::new("/proc"))
        && Path::new("/proc/kcore").exists()
    {
        symlink(root, "/dev/core", "/proc/kcore")?;
    }
    if mounts
        .iter()
        .any(|m| m.destination() == Path::new("/dev/pts"))
    {
        let _ = root.remove_file(Path::new("/dev/ptmx"));
        symlink(root, "/dev/ptmx", "pts/ptmx")?;
    }
    Ok(())
}

fn symlink(root: &Root, link: &str, target: &str) -> Result<()> {
    match root.symlink(Path::new(link), Path::new(target)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e).ctx(Error::Rootfs, || {
            format!("symlink {link} -> {target} in rootfs")
        }),
    }
}

fn make_spec_device(p: &Plan, root: &Root, d: &LinuxDevice) -> Result<()> {
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

fn make_device(p: &Plan, root: &Root, node: &DeviceNode) -> Result<()> {
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
        let host = Path::new("/dev").join(path.strip_prefix("/dev").unwrap_or(path));
        return mnt(
            Some(&host.to_string_lossy()),
            &fd_path(&target)[..],
            None,
            MsFlags::MS_BIND,
            None,
        )
        .ctx(Error::Rootfs, || {
            format!("bind {} on {}", host.display(), path.display())
        });
    }
    let dev = libc::makedev(major as u32, minor as u32);
    let file_type = match kind {
        SFlag::S_IFBLK => FileType::BlockDevice,
        SFlag::S_IFIFO => FileType::Fifo,
        _ => FileType::CharacterDevice,
    };
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
