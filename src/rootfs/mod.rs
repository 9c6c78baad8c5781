//! The container's root filesystem: propagation, the mounts of config.json,
//! devices and /dev links, pivot_root (or MS_MOVE + chroot), then readonly and
//! masked paths and a read-only root. Every path inside the rootfs is resolved
//! by the kernel inside it (openat2 RESOLVE_IN_ROOT, `inroot`), so no symlink
//! or `..` in the rootfs can make a mount or a device node land outside it.

pub mod idmap;
pub mod inroot;
pub mod options;
pub mod procfs;

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::Permissions;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid, chdir, fchdir, pivot_root};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, LinuxNamespaceType, Mount, Spec};
use rustix::fs::FileType;

use self::inroot::RootDir as Root;

use crate::cgroups::Hierarchy;
use crate::error::{Context, Error, Result};
use crate::sys::mount;

pub use options::propagation;

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

fn fd_path(h: &impl AsFd) -> String {
    format!("/proc/self/fd/{}", h.as_fd().as_raw_fd())
}

fn mnt<P: ?Sized + nix::NixPath>(
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
        .and_then(|l| l.rootfs_propagation().clone())
    {
        Some(w) => propagation_flag(&w)?,
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
    if let Some(process) = p.spec.process() {
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

/// pivot_root needs the rootfs's parent mount not to be shared.
fn make_parent_private(rootfs: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .ctx(Error::Rootfs, || "read /proc/self/mountinfo")?;
    let best = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| rootfs.starts_with(mp))
        .max_by_key(|mp| mp.len())
        .unwrap_or("/")
        .to_string();
    mnt(None, best.as_str(), None, MsFlags::MS_PRIVATE, None)
        .ctx(Error::Rootfs, || format!("make {best} private"))
}

fn do_pivot(rootfs: &Path) -> Result<()> {
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
fn chroot_into(rootfs: &Path) -> Result<()> {
    chdir(rootfs).ctx(Error::Rootfs, || format!("chdir {}", rootfs.display()))?;
    nix::unistd::chroot(".").ctx(Error::Rootfs, || format!("chroot {}", rootfs.display()))?;
    chdir("/").ctx(Error::Rootfs, || "chdir /")
}

/// Takes down whatever is mounted at or below `rootfs` in our mount
/// namespace (a container that had none of its own left its mounts there),
/// deepest first, each detached.
pub fn unmount_below(rootfs: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .ctx(Error::Rootfs, || "read /proc/self/mountinfo")?;
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
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

fn move_root(rootfs: &Path) -> Result<()> {
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

/// Fails if resolving `dest` inside the rootfs would climb above its root
/// through `..` (in the path or in a symlink of the rootfs). Absolute symlinks
/// are fine: inside the container they mean the container's own paths, and
/// libpathrs resolves them that way.
pub fn check_no_escape(root: &Root, dest: &Path) -> Result<()> {
    let mut todo: VecDeque<OsString> = VecDeque::new();
    let push_front = |todo: &mut VecDeque<OsString>, p: &Path| {
        let parts: Vec<OsString> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect();
        for part in parts.into_iter().rev() {
            todo.push_front(part);
        }
    };
    push_front(&mut todo, dest);
    let mut cur = PathBuf::from("/");
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            if !cur.pop() {
                return Err(Error::Rootfs(format!(
                    "mount destination {} escapes the rootfs",
                    dest.display()
                )));
            }
            continue;
        }
        cur.push(&part);
        match root.readlink(&cur) {
            Some(target) => {
                links += 1;
                if links > 40 {
                    return Err(Error::Rootfs(format!(
                        "mount destination {}: too many levels of symlinks",
                        dest.display()
                    )));
                }
                let link = cur.clone();
                cur.pop();
                if target.is_absolute() {
                    cur = PathBuf::from("/");
                }
                // Count how far the link climbs relative to where it sits.
                let mut depth = cur.components().count() as isize - 1;
                for c in target.components() {
                    match c {
                        Component::ParentDir => depth -= 1,
                        Component::Normal(_) => depth += 1,
                        _ => {}
                    }
                    if depth < 0 {
                        return Err(Error::Rootfs(format!(
                            "mount destination {} escapes the rootfs via symlink {} -> {}",
                            dest.display(),
                            link.display(),
                            target.display()
                        )));
                    }
                }
                push_front(&mut todo, &target);
            }
            None => {
                // Not a symlink, or not there yet (it will be created).
            }
        }
    }
    Ok(())
}

/// Resolves `dest` in the rootfs, creating a directory (or an empty file) for
/// the mount to land on.
fn mountpoint(root: &Root, dest: &Path, dir: bool) -> Result<OwnedFd> {
    check_no_escape(root, dest)?;
    if let Ok(h) = root.resolve(dest) {
        return Ok(h);
    }
    if dir {
        return root.mkdir_all(dest, 0o755).ctx(Error::Rootfs, || {
            format!("create mountpoint {} in rootfs", dest.display())
        });
    }
    if let Some(parent) = dest.parent() {
        root.mkdir_all(parent, 0o755).ctx(Error::Rootfs, || {
            format!("create mountpoint {} in rootfs", parent.display())
        })?;
    }
    match root.create_file(dest, 0o644) {
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
fn mount_one(p: &Plan, root: &Root, m: &Mount, procfs: &mut Option<procfs::Procfs>) -> Result<()> {
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
        .and_then(|l| l.namespaces().as_ref())
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

fn resolve(root: &Root, dest: &Path) -> Result<OwnedFd> {
    root.resolve(dest).ctx(Error::Rootfs, || {
        format!("resolve {} in rootfs", dest.display())
    })
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
fn remount_bind(target: &str, flags: MsFlags) -> std::result::Result<(), Errno> {
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
        let t = root.mkdir_all(&sub, 0o755).ctx(Error::Rootfs, || {
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
        if name.contains(',') {
            for part in name.split(',') {
                let link = dest.join(part);
                let _ = root.symlink(&link, Path::new(&name));
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

fn setup_dev(p: &Plan, root: &Root, mounts: &[Mount]) -> Result<()> {
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
        .and_then(|l| l.devices().as_ref())
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

/// After pivot_root: readonly paths, masked paths, then a read-only root.
pub fn finalize(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    let readonly = linux.and_then(|l| l.readonly_paths().as_ref());
    let masked = linux.and_then(|l| l.masked_paths().as_ref());
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

/// Whether a libpathrs error is ENOENT.
pub(crate) fn is_enoent(e: &pathrs::error::Error) -> bool {
    matches!(
        e.kind(),
        pathrs::error::ErrorKind::OsError(Some(libc::ENOENT))
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_destinations_that_climb_out_are_refused() {
        let d = std::env::temp_dir().join(format!("ocirun-escape-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::os::unix::fs::symlink("../../../../outside", d.join("up")).unwrap();
        std::os::unix::fs::symlink("/etc", d.join("abs")).unwrap();
        std::os::unix::fs::symlink("../etc", d.join("etc/self")).unwrap();
        let root = Root::open(&d).unwrap();
        // Absolute and in-root relative links are the container's own paths.
        check_no_escape(&root, Path::new("/abs/x")).unwrap();
        check_no_escape(&root, Path::new("/etc/self/x")).unwrap();
        check_no_escape(&root, Path::new("/not/there/yet")).unwrap();
        // Climbing above the root, by a link or by the path itself, is refused.
        let e = check_no_escape(&root, Path::new("/up/x")).unwrap_err();
        assert!(
            e.to_string().contains("escapes the rootfs via symlink /up"),
            "{e}"
        );
        assert!(check_no_escape(&root, Path::new("/../x")).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
