//! Applying one layer (a tar stream) to a rootfs. Every entry is applied by
//! hand through directory fds resolved inside the rootfs by libpathrs
//! (openat2 RESOLVE_IN_ROOT); nothing is ever created, overwritten or
//! followed outside it. `tar::Archive::unpack` is never used.
//!
//! Whiteouts (image spec): `.wh.<name>` removes `<name>` of lower layers;
//! `.wh..wh..opq` empties its directory of lower-layer entries. Entries of the
//! same layer are kept whatever their order in the tar, and whiteout files
//! never appear in the rootfs.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr};
use std::fs::{File, Permissions};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{
    FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmodat, fstatat, mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, linkat, symlinkat, unlinkat};
use pathrs::Root;
use tar::EntryType;

use crate::error::{Error, Result};

pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE: &str = ".wh..wh..opq";

/// Counts of what a layer did, for progress and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    pub bytes: u64,
    pub whiteouts: u64,
}

/// Normalises a tar entry name to a relative path inside the rootfs. Leading
/// `/` and `./` are dropped (tar convention); `..` is refused. `None` for the
/// root itself.
pub fn clean_name(p: &Path) -> Result<Option<PathBuf>> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err(Error::Image(format!(
                    "layer entry {} has a \"..\" component",
                    p.display()
                )));
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// What a whiteout entry asks for, if it is one.
#[derive(Debug, PartialEq, Eq)]
pub enum Whiteout {
    /// `.wh..wh..opq`: the directory (the entry's parent) is opaque.
    Opaque(PathBuf),
    /// `.wh.<name>`: remove `<name>` (the path returned).
    Remove(PathBuf),
}

pub fn whiteout(path: &Path) -> Option<Whiteout> {
    let name = path.file_name()?.to_str()?;
    let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
    if name == OPAQUE {
        return Some(Whiteout::Opaque(parent));
    }
    let target = name.strip_prefix(WHITEOUT_PREFIX)?;
    if target.is_empty() || target == "." || target == ".." {
        return None;
    }
    Some(Whiteout::Remove(parent.join(target)))
}

const DIR_CACHE_MAX: usize = 256;

/// Applies layers to one rootfs.
pub struct Applier {
    root: Root,
    dirs: HashMap<PathBuf, OwnedFd>,
    /// Paths this layer has created (whiteouts spare them).
    layer: HashSet<PathBuf>,
    /// Directories whose mode and mtime are set once their children are in.
    deferred: Vec<(PathBuf, u32, i64)>,
}

fn img<E: std::fmt::Debug>(what: impl FnOnce() -> String) -> impl FnOnce(E) -> Error {
    move |e| Error::Image(format!("{}: {e:?}", what()))
}

impl Applier {
    pub fn new(rootfs: &Path) -> Result<Applier> {
        let root = Root::open(rootfs)
            .map_err(|e| Error::Image(format!("open rootfs {}: {e}", rootfs.display())))?;
        Ok(Applier {
            root,
            dirs: HashMap::new(),
            layer: HashSet::new(),
            deferred: Vec::new(),
        })
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    /// An fd of directory `rel` inside the rootfs, made if missing.
    fn dir(&mut self, rel: &Path) -> Result<OwnedFd> {
        if let Some(fd) = self.dirs.get(rel) {
            return fd
                .try_clone()
                .map_err(|e| Error::Image(format!("dup fd: {e}")));
        }
        let h = self
            .root
            .mkdir_all(Path::new("/").join(rel), &Permissions::from_mode(0o755))
            .map_err(|e| Error::Image(format!("directory /{} in rootfs: {e}", rel.display())))?;
        let fd: OwnedFd = h.into();
        if self.dirs.len() >= DIR_CACHE_MAX {
            self.dirs.clear();
        }
        let copy = fd
            .try_clone()
            .map_err(|e| Error::Image(format!("dup fd: {e}")))?;
        self.dirs.insert(rel.to_path_buf(), copy);
        Ok(fd)
    }

    fn forget_dirs(&mut self) {
        self.dirs.clear();
    }

    /// Applies one layer's tar stream. The reader is read to the end of the
    /// archive, not necessarily to EOF: callers verify digests separately.
    pub fn apply<R: Read>(&mut self, reader: R) -> Result<Stats> {
        self.layer.clear();
        self.deferred.clear();
        let mut stats = Stats::default();
        let mut archive = tar::Archive::new(reader);
        let entries = archive
            .entries()
            .map_err(|e| Error::Image(format!("read layer: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::Image(format!("read layer entry: {e}")))?;
            stats.entries += 1;
            stats.bytes += self.apply_entry(&mut entry, &mut stats)?;
        }
        self.finish_dirs()?;
        Ok(stats)
    }

    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        stats: &mut Stats,
    ) -> Result<u64> {
        let raw = entry
            .path()
            .map_err(|e| Error::Image(format!("layer entry name: {e}")))?
            .into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(0);
        }
        let Some(path) = clean_name(&raw)? else {
            return Ok(0); // the root directory itself: its metadata stays ours
        };
        if let Some(w) = whiteout(&path) {
            stats.whiteouts += 1;
            self.whiteout(w)?;
            return Ok(0);
        }
        let meta = Meta::of(entry)?;
        let parent = path.parent().unwrap_or(Path::new(""));
        let name = path
            .file_name()
            .expect("cleaned path has a name")
            .to_os_string();
        let pfd = self.dir(parent)?;
        let shown = || format!("/{}", path.display());
        let existing = fstatat(&pfd, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).ok();
        let existing_dir = existing.is_some_and(|s| {
            SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
        });
        let mut written = 0;
        if kind == EntryType::Directory {
            if existing.is_some() && !existing_dir {
                unlinkat(&pfd, name.as_os_str(), UnlinkatFlags::NoRemoveDir)
                    .map_err(img(|| format!("replace {}", shown())))?;
            }
            if !existing_dir {
                mkdirat(&pfd, name.as_os_str(), Mode::from_bits_truncate(0o700))
                    .map_err(img(|| format!("mkdir {}", shown())))?;
            }
            self.chown(&pfd, &name, &meta, &shown)?;
            let dfd = openat(
                &pfd,
                name.as_os_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(img(|| format!("open {}", shown())))?;
            set_xattrs_fd(&dfd, &meta.xattrs, &shown)?;
            self.deferred.push((path.clone(), meta.mode, meta.mtime));
        } else {
            if existing_dir {
                self.root
                    .remove_all(Path::new("/").join(&path))
                    .map_err(|e| Error::Image(format!("replace directory {}: {e}", shown())))?;
                self.forget_dirs();
            } else if existing.is_some() {
                unlinkat(&pfd, name.as_os_str(), UnlinkatFlags::NoRemoveDir)
                    .map_err(img(|| format!("replace {}", shown())))?;
            }
            match kind {
                EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                    let fd = openat(
                        &pfd,
                        name.as_os_str(),
                        OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_WRONLY
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o600),
                    )
                    .map_err(img(|| format!("create {}", shown())))?;
                    let mut f = File::from(fd);
                    written = io::copy(entry, &mut f)
                        .map_err(|e| Error::Image(format!("write {}: {e}", shown())))?;
                    nix::unistd::fchown(
                        &f,
                        Some(Uid::from_raw(meta.uid)),
                        Some(Gid::from_raw(meta.gid)),
                    )
                    .map_err(img(|| format!("chown {}", shown())))?;
                    // After chown, which clears setuid/setgid.
                    nix::sys::stat::fchmod(&f, Mode::from_bits_truncate(meta.mode))
                        .map_err(img(|| format!("chmod {}", shown())))?;
                    set_xattrs_fd(&f, &meta.xattrs, &shown)?;
                    let t = TimeSpec::new(meta.mtime, 0);
                    nix::sys::stat::futimens(&f, &t, &t)
                        .map_err(img(|| format!("set times of {}", shown())))?;
                }
                EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .map_err(|e| Error::Image(format!("symlink {}: {e}", shown())))?
                        .ok_or_else(|| Error::Image(format!("symlink {} has no target", shown())))?
                        .into_owned();
                    symlinkat(target.as_os_str(), &pfd, name.as_os_str())
                        .map_err(img(|| format!("symlink {}", shown())))?;
                    self.chown(&pfd, &name, &meta, &shown)?;
                    if !meta.xattrs.is_empty() {
                        let p = fd_child_path(&pfd, &name);
                        for (k, v) in &meta.xattrs {
                            crate::sys::lsetxattr(&p, k, v)
                                .map_err(img(|| format!("set xattr {k:?} on {}", shown())))?;
                        }
                    }
                    let t = TimeSpec::new(meta.mtime, 0);
                    utimensat(
                        &pfd,
                        name.as_os_str(),
                        &t,
                        &t,
                        UtimensatFlags::NoFollowSymlink,
                    )
                    .map_err(img(|| format!("set times of {}", shown())))?;
                }
                EntryType::Link => {
                    let target_raw = entry
                        .link_name()
                        .map_err(|e| Error::Image(format!("hardlink {}: {e}", shown())))?
                        .ok_or_else(|| Error::Image(format!("hardlink {} has no target", shown())))?
                        .into_owned();
                    let target = clean_name(&target_raw)?
                        .ok_or_else(|| Error::Image(format!("hardlink {} to the root", shown())))?;
                    // The link itself, not what it may point to, and never outside.
                    let h = self
                        .root
                        .resolve_nofollow(Path::new("/").join(&target))
                        .map_err(|e| {
                            Error::Image(format!(
                                "hardlink {} -> /{}: {e}",
                                shown(),
                                target.display()
                            ))
                        })?;
                    let hfd: OwnedFd = h.into();
                    linkat(&hfd, "", &pfd, name.as_os_str(), AtFlags::AT_EMPTY_PATH).map_err(
                        img(|| format!("hardlink {} -> /{}", shown(), target.display())),
                    )?;
                }
                EntryType::Char | EntryType::Block | EntryType::Fifo => {
                    let (ft, dev) = match kind {
                        EntryType::Char => (SFlag::S_IFCHR, dev_of(entry)),
                        EntryType::Block => (SFlag::S_IFBLK, dev_of(entry)),
                        _ => (SFlag::S_IFIFO, 0),
                    };
                    mknodat(
                        &pfd,
                        name.as_os_str(),
                        ft,
                        Mode::from_bits_truncate(0o600),
                        dev,
                    )
                    .map_err(img(|| format!("mknod {}", shown())))?;
                    self.chown(&pfd, &name, &meta, &shown)?;
                    fchmodat(
                        &pfd,
                        name.as_os_str(),
                        Mode::from_bits_truncate(meta.mode),
                        FchmodatFlags::NoFollowSymlink,
                    )
                    .or_else(|_| {
                        fchmodat(
                            &pfd,
                            name.as_os_str(),
                            Mode::from_bits_truncate(meta.mode),
                            FchmodatFlags::FollowSymlink,
                        )
                    })
                    .map_err(img(|| format!("chmod {}", shown())))?;
                    let t = TimeSpec::new(meta.mtime, 0);
                    utimensat(
                        &pfd,
                        name.as_os_str(),
                        &t,
                        &t,
                        UtimensatFlags::NoFollowSymlink,
                    )
                    .map_err(img(|| format!("set times of {}", shown())))?;
                }
                other => {
                    return Err(Error::Image(format!(
                        "layer entry {} has unsupported type {other:?}",
                        shown()
                    )));
                }
            }
        }
        self.layer.insert(path);
        Ok(written)
    }

    fn chown(
        &self,
        pfd: &OwnedFd,
        name: &OsStr,
        meta: &Meta,
        shown: &dyn Fn() -> String,
    ) -> Result<()> {
        fchownat(
            pfd,
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(img(|| format!("chown {}", shown())))
    }

    fn whiteout(&mut self, w: Whiteout) -> Result<()> {
        match w {
            Whiteout::Opaque(dir) => self.opaque(&dir),
            Whiteout::Remove(p) => {
                if self.layer.contains(&p) {
                    return Ok(()); // same layer: only lower layers are whited out
                }
                if self.layer.iter().any(|l| l.starts_with(&p)) {
                    return self.opaque(&p);
                }
                match self.root.remove_all(Path::new("/").join(&p)) {
                    Ok(()) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            pathrs::error::ErrorKind::OsError(Some(libc::ENOENT))
                        ) => {}
                    Err(e) => return Err(Error::Image(format!("whiteout /{}: {e}", p.display()))),
                }
                self.forget_dirs();
                Ok(())
            }
        }
    }

    /// Removes the lower-layer children of `dir`, keeping this layer's.
    fn opaque(&mut self, dir: &Path) -> Result<()> {
        let dfd = self.dir(dir)?;
        let listing = std::fs::read_dir(format!("/proc/self/fd/{}", dfd.as_raw_fd()))
            .map_err(|e| Error::Image(format!("list /{}: {e}", dir.display())))?;
        for e in listing {
            let e = e.map_err(|e| Error::Image(format!("list /{}: {e}", dir.display())))?;
            let child = dir.join(e.file_name());
            if self.layer.contains(&child) {
                continue;
            }
            if self.layer.iter().any(|l| l.starts_with(&child)) {
                self.opaque(&child)?;
                continue;
            }
            self.root
                .remove_all(Path::new("/").join(&child))
                .map_err(|e| {
                    Error::Image(format!(
                        "opaque /{}: remove /{}: {e}",
                        dir.display(),
                        child.display()
                    ))
                })?;
        }
        self.forget_dirs();
        self.layer.insert(dir.to_path_buf());
        Ok(())
    }

    /// Sets directories' modes and mtimes after their children are in,
    /// deepest first.
    fn finish_dirs(&mut self) -> Result<()> {
        let mut dirs = std::mem::take(&mut self.deferred);
        dirs.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.components().count()));
        for (p, mode, mtime) in dirs {
            let parent = p.parent().unwrap_or(Path::new(""));
            let name = p.file_name().expect("named").to_os_string();
            let pfd = self.dir(parent)?;
            fchmodat(
                &pfd,
                name.as_os_str(),
                Mode::from_bits_truncate(mode),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(img(|| format!("chmod /{}", p.display())))?;
            let t = TimeSpec::new(mtime, 0);
            utimensat(
                &pfd,
                name.as_os_str(),
                &t,
                &t,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(img(|| format!("set times of /{}", p.display())))?;
        }
        Ok(())
    }
}

fn fd_child_path(dir: &OwnedFd, name: &OsStr) -> CString {
    let mut v = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    v.extend_from_slice(name.as_bytes());
    CString::new(v).expect("no NUL in a file name")
}

fn set_xattrs_fd(
    fd: &impl AsFd,
    xattrs: &[(CString, Vec<u8>)],
    shown: &dyn Fn() -> String,
) -> Result<()> {
    for (k, v) in xattrs {
        crate::sys::fsetxattr(fd.as_fd(), k, v)
            .map_err(img(|| format!("set xattr {k:?} on {}", shown())))?;
    }
    Ok(())
}

fn dev_of<R: Read>(entry: &tar::Entry<R>) -> u64 {
    let h = entry.header();
    let major = h.device_major().ok().flatten().unwrap_or(0);
    let minor = h.device_minor().ok().flatten().unwrap_or(0);
    libc::makedev(major, minor)
}

/// Ownership, mode, mtime and xattrs of an entry, PAX records included.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl Meta {
    fn of<R: Read>(entry: &mut tar::Entry<R>) -> Result<Meta> {
        let h = entry.header();
        let bad = |what: &str, e: io::Error| Error::Image(format!("layer entry {what}: {e}"));
        let mut m = Meta {
            uid: h.uid().map_err(|e| bad("uid", e))? as u32,
            gid: h.gid().map_err(|e| bad("gid", e))? as u32,
            mode: h.mode().map_err(|e| bad("mode", e))? & 0o7777,
            mtime: h.mtime().map_err(|e| bad("mtime", e))? as i64,
            xattrs: Vec::new(),
        };
        if let Some(exts) = entry.pax_extensions().map_err(|e| bad("pax header", e))? {
            for ext in exts {
                let ext = ext.map_err(|e| bad("pax header", e))?;
                let Ok(key) = ext.key() else { continue };
                let value = ext.value_bytes();
                let num = || {
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.split('.').next()?.parse::<i64>().ok())
                };
                if let Some(x) = key.strip_prefix("SCHILY.xattr.") {
                    if let Ok(k) = CString::new(x) {
                        m.xattrs.push((k, value.to_vec()));
                    }
                } else if key == "uid" {
                    m.uid = num().unwrap_or(m.uid as i64) as u32;
                } else if key == "gid" {
                    m.gid = num().unwrap_or(m.gid as i64) as u32;
                } else if key == "mtime" {
                    m.mtime = num().unwrap_or(m.mtime);
                }
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_and_dotdot_refused() {
        assert_eq!(
            clean_name(Path::new("./a/b")).unwrap(),
            Some(PathBuf::from("a/b"))
        );
        assert_eq!(
            clean_name(Path::new("/etc/passwd")).unwrap(),
            Some(PathBuf::from("etc/passwd"))
        );
        assert_eq!(clean_name(Path::new("./")).unwrap(), None);
        assert!(clean_name(Path::new("a/../../etc")).is_err());
        assert!(clean_name(Path::new("../x")).is_err());
    }

    #[test]
    fn whiteout_rules() {
        assert_eq!(
            whiteout(Path::new("a/b/.wh.c")),
            Some(Whiteout::Remove(PathBuf::from("a/b/c")))
        );
        assert_eq!(
            whiteout(Path::new(".wh.top")),
            Some(Whiteout::Remove(PathBuf::from("top")))
        );
        assert_eq!(
            whiteout(Path::new("d/.wh..wh..opq")),
            Some(Whiteout::Opaque(PathBuf::from("d")))
        );
        assert_eq!(whiteout(Path::new("d/plain")), None);
        assert_eq!(whiteout(Path::new("d/.wh.")), None);
        assert_eq!(whiteout(Path::new("d/.wh..")), None);
    }
}
