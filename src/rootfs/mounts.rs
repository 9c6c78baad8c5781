//! The mounts of config.json: mountpoints, binds and their remounts,
//! `type: cgroup`, recursive attributes and propagation.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};

use super::escape::check_no_escape;
use super::inroot::{self, Plain};
use super::{Plan, Root, fd_path, idmap, mnt, options, procfs, resolve};
use crate::error::{Context, Error, Result};
use crate::sys::mount;

/// Resolves `dest` in the rootfs, creating a directory (or an empty file) for
/// the mount to land on.
pub(super) fn mountpoint(root: &Root, dest: &Path, dir: bool) -> Result<OwnedFd> {
    // Going down only (no `..`, no symlink), `dest` cannot escape: the walk
    // of `check_no_escape` would pass, and what is there is already found.
    let below = match root.plain(dest) {
        Some(Plain::Found(h)) => return Ok(h),
        Some(Plain::Missing(ancestor, have)) => Some((ancestor, have)),
        None => {
            check_no_escape(root, dest)?;
            if let Ok(h) = root.resolve(dest) {
                return Ok(h);
            }
            None
        }
    };
    if dir {
        let made = match below {
            Some((ancestor, have)) => root.mkdir_below(ancestor, have, dest, 0o755),
            None => root.mkdir_all(dest, 0o755),
        };
        return made.ctx(Error::Rootfs, || {
            format!("create mountpoint {} in rootfs", dest.display())
        });
    }
    let created = match (below, dest.parent(), dest.file_name()) {
        (Some((ancestor, have)), Some(parent), Some(name)) => {
            let parent_fd = root
                .mkdir_below(ancestor, have, parent, 0o755)
                .ctx(Error::Rootfs, || {
                    format!("create mountpoint {} in rootfs", parent.display())
                })?;
            inroot::create_file_in(&parent_fd, name, 0o644)
        }
        _ => {
            if let Some(parent) = dest.parent() {
                root.mkdir_all(parent, 0o755).ctx(Error::Rootfs, || {
                    format!("create mountpoint {} in rootfs", parent.display())
                })?;
            }
            root.create_file(dest, 0o644)
        }
    };
    match created {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => {
            return Err(e).ctx(Error::Rootfs, || {
                format!("create mountpoint {} in rootfs", dest.display())
            });
        }
    }
    root.resolve(dest).ctx(Error::Rootfs, || {
        format!("resolve mountpoint {} in rootfs", dest.display())
    })
}

/// One entry of `mounts`: the mount, then its recursive attributes, then
/// its propagation.
pub(super) fn mount_one(
    p: &Plan,
    root: &Root,
    m: &Mount,
    procfs: &mut Option<procfs::Procfs>,
) -> Result<()> {
    let dest = m.destination();
    let opts = options::parse(m.options().as_deref().unwrap_or_default())?;
    let userns = match idmap::request(m, &opts)? {
        Some(r) => {
            if procfs.is_none() {
                *procfs = Some(procfs::Procfs::open_own_pidns()?);
            }
            let fd = idmap::user_namespace(procfs.as_ref().expect("opened"), &r, dest)?;
            Some((fd, r.recursive))
        }
        None => None,
    };
    make_mount(p, root, m, &opts, userns)?;
    apply_rec_attrs(p, root, dest, &opts)?;
    apply_propagation(root, dest, &opts.propagation)
}

/// Makes the mount itself; `idmap` is the user namespace of an idmapped
/// bind mount and whether its submounts are idmapped too.
fn make_mount(
    p: &Plan,
    root: &Root,
    m: &Mount,
    opts: &options::Parsed,
    idmap: Option<(std::os::fd::OwnedFd, bool)>,
) -> Result<()> {
    let dest = m.destination();
    let typ = m.typ().as_deref().unwrap_or("");
    let source = m
        .source()
        .as_ref()
        .map(|s| s.to_string_lossy().into_owned());
    if idmap::is_bind(m, opts) {
        let src = m.source().as_ref().ok_or_else(|| {
            Error::Spec(format!("bind mount on {} has no source", dest.display()))
        })?;
        let src = if src.is_absolute() {
            src.clone()
        } else {
            p.bundle.join(src)
        };
        let meta = std::fs::metadata(&src).ctx(Error::Rootfs, || {
            format!("bind mount source {}", src.display())
        })?;
        let target = mountpoint(root, dest, meta.is_dir())?;
        let rbind = opts.flags.contains(MsFlags::MS_REC);
        if let Some((userns, recursive)) = &idmap {
            idmap::bind(
                &src,
                target.as_fd(),
                rbind,
                *recursive,
                userns.as_fd(),
                dest,
            )?;
        } else {
            let flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
            mnt(
                Some(&src.to_string_lossy()),
                &fd_path(&target)[..],
                None,
                flags,
                None,
            )
            .ctx(Error::Rootfs, || {
                format!("bind {} on {}", src.display(), dest.display())
            })?;
        }
        let extra = opts.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            let on = resolve(root, dest)?;
            remount_bind(&fd_path(&on), extra).ctx(Error::Rootfs, || {
                format!("remount {} with {:?}", dest.display(), m.options())
            })?;
        }
        return Ok(());
    }
    if typ == "cgroup" {
        return mount_cgroup(p, root, dest, opts);
    }
    let target = mountpoint(root, dest, true)?;
    let data = crate::security::lsm::mount_data(typ, &opts.data, p.spec);
    let data = (!data.is_empty()).then_some(data.as_str());
    let mut r = mnt(
        source.as_deref(),
        &fd_path(&target)[..],
        Some(typ),
        opts.flags,
        data,
    );
    if r == Err(Errno::EINVAL) && typ == "mqueue" && p.userns {
        r = Ok(());
    }
    if r == Err(Errno::EPERM) && typ == "sysfs" && p.userns && !new_netns(p.spec) {
        // A user namespace may mount sysfs only with a network namespace of
        // its own: bind the host's /sys instead (as runc's rootless spec).
        drop(target);
        return bind_host_sys(p, root, m);
    }
    let hint = match (r, typ) {
        (Err(Errno::EPERM), "mqueue") if p.userns => {
            " (in a user namespace mqueue needs an ipc namespace of the container's own)"
        }
        (Err(Errno::EPERM), _) if p.userns => {
            " (the kernel refuses this mount in the container's user namespace)"
        }
        _ => "",
    };
    r.ctx(Error::Rootfs, || {
        format!(
            "mount {typ} on {}{}{hint}",
            p.rootfs.display(),
            dest.display()
        )
    })
}

fn new_netns(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|linux| linux.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter()
                .any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_none())
        })
}

/// `sysfs` on `m`'s destination as a recursive bind of the host's /sys with
/// the mount's own options.
fn bind_host_sys(p: &Plan, root: &Root, m: &Mount) -> Result<()> {
    let mut words = vec!["rbind".to_string()];
    words.extend(m.options().iter().flatten().cloned());
    let mut bind = m.clone();
    bind.set_typ(Some("bind".into()));
    bind.set_source(Some("/sys".into()));
    bind.set_options(Some(words));
    let opts = options::parse(bind.options().as_deref().unwrap_or_default())?;
    make_mount(p, root, &bind, &opts, None)
}

/// The recursive words (`rro`, `rnosuid`, ...) on the mount now at `dest`
/// and every mount under it: one recursive `mount_setattr(2)` on a handle of
/// the mount's root.
fn apply_rec_attrs(p: &Plan, root: &Root, dest: &Path, opts: &options::Parsed) -> Result<()> {
    if opts.rec_set == 0 && opts.rec_clear == 0 {
        return Ok(());
    }
    let on = resolve(root, dest)?;
    let attr = mount::MountAttr {
        set: opts.rec_set,
        clear: opts.rec_clear,
        userns: None,
    };
    mount::setattr(on.as_fd(), true, &attr).ctx(Error::Rootfs, || {
        format!(
            "mount_setattr {} on {}{}",
            opts.rec_words.join(","),
            p.rootfs.display(),
            dest.display()
        )
    })
}

fn apply_propagation(root: &Root, dest: &Path, props: &[MsFlags]) -> Result<()> {
    if props.is_empty() {
        return Ok(());
    }
    let on = resolve(root, dest)?;
    for f in props {
        mnt(None, &fd_path(&on)[..], None, *f, None).ctx(Error::Rootfs, || {
            format!("set propagation {f:?} on {}", dest.display())
        })?;
    }
    Ok(())
}

/// Remounts a bind mount with `flags`, keeping the flags the kernel locked on
/// it (in a user namespace nosuid/nodev/noexec cannot be cleared).
pub(super) fn remount_bind(target: &str, flags: MsFlags) -> std::result::Result<(), Errno> {
    let locked = nix::sys::statvfs::statvfs(target)
        .map(|s| {
            use nix::sys::statvfs::FsFlags as F;
            let f = s.flags();
            let mut m = MsFlags::empty();
            for (a, b) in [
                (F::ST_NOSUID, MsFlags::MS_NOSUID),
                (F::ST_NODEV, MsFlags::MS_NODEV),
                (F::ST_NOEXEC, MsFlags::MS_NOEXEC),
                (F::ST_NOATIME, MsFlags::MS_NOATIME),
                (F::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
                (F::ST_RELATIME, MsFlags::MS_RELATIME),
            ] {
                if f.contains(a) {
                    m |= b;
                }
            }
            m
        })
        .unwrap_or(MsFlags::empty());
    mnt(
        None,
        target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | locked,
        None,
    )
}

/// `type: cgroup`: the container's own cgroups. With a new cgroup namespace
/// the real cgroup filesystems are mounted (they show the namespace root);
/// without one the container's cgroup directories are bind-mounted.
fn mount_cgroup(p: &Plan, root: &Root, dest: &Path, opts: &options::Parsed) -> Result<()> {
    let flags = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
    let v2_only = p.cgroups.len() == 1 && p.cgroups[0].v2;
    let target = mountpoint(root, dest, true)?;
    let fdp = fd_path(&target);
    if v2_only {
        let h = &p.cgroups[0];
        let mounted = match p.cgroupns {
            true => mnt(Some("cgroup2"), &fdp[..], Some("cgroup2"), flags, None),
            false => Err(Errno::EPERM),
        };
        match mounted {
            Ok(()) => {}
            // In a user namespace a cgroup2 mount can be refused (EPERM), or
            // be the same superblock as the host's cgroup2 that a bind of
            // the host's /sys put here (EBUSY): bind the container's cgroup
            // instead, as runc does.
            Err(Errno::EPERM | Errno::EBUSY) if p.cgroupns && p.userns => {
                bind_with_flags(root, &h.dir, dest, &fdp, flags)?;
            }
            Err(e) if p.cgroupns => {
                return Err(e).ctx(Error::Rootfs, || {
                    format!("mount cgroup2 on {}", dest.display())
                });
            }
            Err(_) => {
                bind_with_flags(root, &h.dir, dest, &fdp, flags)?;
            }
        }
        return Ok(());
    }
    // v1 or hybrid: a tmpfs holding one mount per hierarchy, like runc.
    let tmpfs_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mnt(
        Some("tmpfs"),
        &fdp[..],
        Some("tmpfs"),
        tmpfs_flags,
        Some("mode=755"),
    )
    .ctx(Error::Rootfs, || {
        format!("mount tmpfs on {}", dest.display())
    })?;
    drop(target);
    // The new tmpfs, which the mounts below do not cover: each hierarchy's
    // directory is made in it by name.
    let holder = root.resolve(dest);
    for h in p.cgroups {
        let name = h
            .mount
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.is_empty() {
            continue;
        }
        let sub = dest.join(&name);
        let t = match &holder {
            Ok(holder) => root.mkdir_child(holder, &sub, 0o755),
            Err(e) => Err(*e),
        }
        .ctx(Error::Rootfs, || {
            format!("create {} in rootfs", sub.display())
        })?;
        let fdp = fd_path(&t);
        if p.cgroupns {
            let (fstype, data) = if h.v2 {
                ("cgroup2", None)
            } else {
                ("cgroup", Some(h.controllers.as_str()))
            };
            mnt(Some(fstype), &fdp[..], Some(fstype), flags, data).ctx(Error::Rootfs, || {
                format!("mount cgroup {} on {}", h.controllers, sub.display())
            })?;
        } else {
            bind_with_flags(root, &h.dir, &sub, &fdp, flags)?;
        }
        // cpu,cpuacct mounted together: give each controller its own name too.
        if let (true, Ok(holder)) = (name.contains(','), &holder) {
            for part in name.split(',') {
                if !matches!(part, "" | "." | "..") {
                    let _ = rustix::fs::symlinkat(name.as_str(), holder, part);
                }
            }
        }
    }
    // `ro` applies to the controller mounts (above); the tmpfs holding them
    // stays writable, as runc leaves it.
    Ok(())
}

/// Binds `src` on `dest` (already a mountpoint in the rootfs), then remounts
/// the new mount (re-resolved: the old handle is the covered directory) with
/// `flags`.
fn bind_with_flags(
    root: &Root,
    src: &Path,
    dest: &Path,
    target: &str,
    flags: MsFlags,
) -> Result<()> {
    mnt(
        Some(&src.to_string_lossy()),
        target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .ctx(Error::Rootfs, || {
        format!("bind {} on {}", src.display(), dest.display())
    })?;
    let extra = flags - MsFlags::MS_REMOUNT;
    if !extra.is_empty() {
        let on = resolve(root, dest)?;
        remount_bind(&fd_path(&on), extra).ctx(Error::Rootfs, || {
            format!("remount {} with {extra:?}", dest.display())
        })?;
    }
    Ok(())
}
