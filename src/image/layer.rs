//! Applying one layer (a tar stream) to a rootfs. Every entry is applied by
//! hand through directory fds resolved inside the rootfs by libpathrs
//! (openat2 RESOLVE_IN_ROOT); nothing is ever created, overwritten or
//! followed outside it. `tar::Archive::unpack` is never used.
//!
//! Whiteouts (image spec): `.wh.<name>` removes `<name>` of lower layers;
//! `.wh..wh..opq` empties its directory of lower-layer entries. Entries of the
//! same layer are kept whatever their order in the tar, and whiteout files
//! never appear in the rootfs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr};
use std::fs::{File, Permissions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{
    FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmodat, fstatat, mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, linkat, symlinkat, unlinkat};
use pathrs::Root;
use tar::EntryType;

use super::owner;
use crate::error::{Context, Error, Result};

pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE: &str = ".wh..wh..opq";

/// Counts of what a layer did, for progress, the summary and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    pub bytes: u64,
    pub whiteouts: u64,
    /// Rootless: character and block devices not made (mknod needs
    /// privilege).
    pub skipped_devices: u64,
    /// Rootless: xattrs the kernel refused without privilege
    /// (`security.*`, `trusted.*`), by name.
    pub skipped_xattrs: BTreeMap<String, u64>,
    /// Rootless: entries whose owner is not root but could not be kept in
    /// `user.rootlesscontainers` (symlinks and fifos take no user xattrs, or
    /// the filesystem has none).
    pub unrecorded_owners: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.entries += o.entries;
        self.bytes += o.bytes;
        self.whiteouts += o.whiteouts;
        self.skipped_devices += o.skipped_devices;
        for (k, n) in &o.skipped_xattrs {
            *self.skipped_xattrs.entry(k.clone()).or_default() += n;
        }
        self.unrecorded_owners += o.unrecorded_owners;
    }

    /// One line on what a rootless unpack could not keep, if anything.
    pub fn rootless_summary(&self) -> Option<String> {
        let plural =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let mut parts = Vec::new();
        if self.skipped_devices > 0 {
            parts.push(format!(
                "{} skipped (mknod needs privilege)",
                plural(self.skipped_devices, "device node", "device nodes")
            ));
        }
        if !self.skipped_xattrs.is_empty() {
            let n = self.skipped_xattrs.values().sum();
            let names: Vec<&str> = self.skipped_xattrs.keys().map(String::as_str).collect();
            parts.push(format!(
                "{} not set ({}: needs privilege)",
                plural(n, "xattr", "xattrs"),
                names.join(", ")
            ));
        }
        if self.unrecorded_owners > 0 {
            parts.push(format!(
                "{} not kept ({}: not allowed on symlinks and fifos, or by the filesystem)",
                plural(self.unrecorded_owners, "owner", "owners"),
                owner::XATTR
            ));
        }
        (!parts.is_empty()).then(|| format!("rootless unpack: {}", parts.join("; ")))
    }
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

/// Applies layers to one rootfs.
pub struct Applier {
    root: Root,
    /// Directory fds by path relative to the rootfs ("" is the rootfs).
    dirs: HashMap<PathBuf, Rc<OwnedFd>>,
    dir_cache_max: usize,
    /// Paths this layer has created (whiteouts spare them).
    layer: HashSet<PathBuf>,
    /// Rootless: the device nodes not made (a hard link to one is not
    /// made either).
    skipped_devices: HashSet<PathBuf>,
    /// Directories' modes and mtimes, set by `finish` once every layer is
    /// in, by their real path in the rootfs (no symlinks): the last entry
    /// for a directory wins, removed trees are dropped.
    dir_meta: BTreeMap<PathBuf, (u32, i64)>,
    /// The rootfs as /proc/self/fd shows it, to make real paths relative.
    top_real: PathBuf,
    buf: Vec<u8>,
    /// The umask to restore when done (we apply modes with umask 0).
    old_umask: Mode,
    /// When set, progress lines go to stderr with this prefix.
    pub progress: Option<String>,
    /// Without privilege: no chown (owners go to `user.rootlesscontainers`),
    /// no device nodes, xattrs the kernel refuses are counted.
    rootless: bool,
}

impl Drop for Applier {
    fn drop(&mut self) {
        nix::sys::stat::umask(self.old_umask);
    }
}

fn is_dir(mode: u32) -> bool {
    SFlag::from_bits_truncate(mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

fn is_symlink(mode: u32) -> bool {
    SFlag::from_bits_truncate(mode) & SFlag::S_IFMT == SFlag::S_IFLNK
}

impl Applier {
    /// An applier for `rootfs`; `rootless` for a caller without privilege
    /// (see [`Stats`] for what it cannot keep).
    pub fn new(rootfs: &Path, rootless: bool) -> Result<Applier> {
        let root = Root::open(rootfs)
            .map_err(|e| Error::Image(format!("open rootfs {}: {e}", rootfs.display())))?;
        let top = openat(
            nix::fcntl::AT_FDCWD,
            rootfs,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(Error::Image, || format!("open rootfs {}", rootfs.display()))?;
        // Modes are given at creation exactly as the layer says.
        let old_umask = nix::sys::stat::umask(Mode::empty());
        // Directory fds are cached: allow as many as the hard limit lets us.
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
        let limit = getrlimit(Resource::RLIMIT_NOFILE)
            .map(|limits| limits.0)
            .unwrap_or(soft);
        let dir_cache_max = (limit.min(1 << 16) as usize).saturating_sub(256).max(64);
        let top_real = std::fs::read_link(format!("/proc/self/fd/{}", top.as_raw_fd()))
            .map_err(|e| Error::Image(format!("open rootfs {}: {e}", rootfs.display())))?;
        let mut dirs = HashMap::new();
        dirs.insert(PathBuf::new(), Rc::new(top));
        Ok(Applier {
            root,
            dirs,
            dir_cache_max,
            layer: HashSet::new(),
            skipped_devices: HashSet::new(),
            dir_meta: BTreeMap::new(),
            top_real,
            buf: vec![0; 256 << 10],
            old_umask,
            progress: None,
            rootless,
        })
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    /// An fd of directory `rel` inside the rootfs, made if missing. Walks down
    /// from the nearest cached ancestor one component at a time with
    /// O_NOFOLLOW; a component that is a symlink (or anything odd) hands the
    /// whole path to libpathrs, which resolves it inside the rootfs.
    fn dir(&mut self, rel: &Path) -> Result<Rc<OwnedFd>> {
        if let Some(fd) = self.dirs.get(rel) {
            return Ok(fd.clone());
        }
        let mut anc = rel;
        let base = loop {
            anc = anc.parent().unwrap_or(Path::new(""));
            if let Some(fd) = self.dirs.get(anc) {
                break fd.clone();
            }
        };
        let mut cur = base;
        let mut path = anc.to_path_buf();
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        for c in rel.strip_prefix(anc).expect("ancestor").components() {
            let name = c.as_os_str();
            path.push(name);
            let next = match openat(&cur, name, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    match mkdirat(&cur, name, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => {
                            return Err(e)
                                .ctx(Error::Image, || format!("mkdir /{}", path.display()));
                        }
                    }
                    match openat(&cur, name, flags, Mode::empty()) {
                        Ok(fd) => fd,
                        Err(_) => return self.dir_slow(rel),
                    }
                }
                Err(_) => return self.dir_slow(rel),
            };
            cur = Rc::new(next);
            self.remember(path.clone(), cur.clone());
        }
        Ok(cur)
    }

    fn dir_slow(&mut self, rel: &Path) -> Result<Rc<OwnedFd>> {
        let h = self
            .root
            .mkdir_all(Path::new("/").join(rel), &Permissions::from_mode(0o755))
            .map_err(|e| Error::Image(format!("directory /{} in rootfs: {e}", rel.display())))?;
        let fd = Rc::new(OwnedFd::from(h));
        self.remember(rel.to_path_buf(), fd.clone());
        Ok(fd)
    }

    fn remember(&mut self, rel: PathBuf, fd: Rc<OwnedFd>) {
        if self.dirs.len() >= self.dir_cache_max {
            self.dirs.retain(|k, _| k.as_os_str().is_empty());
        }
        self.dirs.insert(rel, fd);
    }

    /// Drops cached fds at and under `rel` (it was removed or replaced).
    fn forget(&mut self, rel: &Path) {
        self.dirs
            .retain(|k, _| k.as_os_str().is_empty() || !k.starts_with(rel));
    }

    /// The real path in the rootfs of `logical`, whose parent was resolved
    /// to `dir` (the same path unless a symlink was followed on the way).
    fn real_path(&self, dir: &OwnedFd, logical: &Path) -> PathBuf {
        let name = logical.file_name().unwrap_or_default();
        std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd()))
            .ok()
            .and_then(|d| Some(d.strip_prefix(&self.top_real).ok()?.join(name)))
            .unwrap_or_else(|| logical.to_path_buf())
    }

    /// Drops cached fds strictly under `rel`.
    fn forget_under(&mut self, rel: &Path) {
        self.dirs
            .retain(|k, _| k.as_os_str().is_empty() || k == rel || !k.starts_with(rel));
    }

    /// Applies one layer's tar stream. The reader is read to the end of the
    /// archive, not necessarily to EOF: callers verify digests separately.
    pub fn apply<R: Read>(&mut self, reader: R) -> Result<Stats> {
        self.layer.clear();
        let mut stats = Stats::default();
        let mut archive = tar::Archive::new(reader);
        let entries = archive
            .entries()
            .map_err(|e| Error::Image(format!("read layer: {e}")))?;
        let mut shown = 0;
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::Image(format!("read layer entry: {e}")))?;
            stats.entries += 1;
            stats.bytes += self.apply_entry(&mut entry, &mut stats)?;
            if let Some(p) = &self.progress
                && stats.bytes - shown >= 8 << 20
            {
                shown = stats.bytes;
                eprint!("\r{p}: {} entries, {} MB", stats.entries, stats.bytes >> 20);
            }
        }
        Ok(stats)
    }

    /// Removes whatever is at `parent/name` so an entry can take its place.
    fn clear_spot(&mut self, pfd: &OwnedFd, name: &OsStr, path: &Path) -> Result<()> {
        let shown = || format!("/{}", path.display());
        let st = match fstatat(pfd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e).ctx(Error::Image, || format!("stat {}", shown())),
        };
        if is_dir(st.st_mode) {
            self.root
                .remove_all(Path::new("/").join(path))
                .map_err(|e| Error::Image(format!("replace directory {}: {e}", shown())))?;
            self.forget(path);
            self.drop_meta(&self.real_path(pfd, path));
        } else {
            unlinkat(pfd, name, UnlinkatFlags::NoRemoveDir)
                .ctx(Error::Image, || format!("replace {}", shown()))?;
            if is_symlink(st.st_mode) {
                self.forget(path);
            }
        }
        Ok(())
    }

    /// Runs `create`; if the spot is taken, clears it and runs it again.
    fn create_at(
        &mut self,
        pfd: &OwnedFd,
        name: &OsStr,
        path: &Path,
        what: &str,
        mut create: impl FnMut() -> std::result::Result<(), Errno>,
    ) -> Result<()> {
        match create() {
            Err(Errno::EEXIST) => {
                self.clear_spot(pfd, name, path)?;
                create()
            }
            r => r,
        }
        .ctx(Error::Image, || format!("{what} /{}", path.display()))
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
        if let Some(rule) = whiteout(&path) {
            stats.whiteouts += 1;
            self.whiteout(rule)?;
            return Ok(0);
        }
        // Whatever this entry is, a device skipped there is gone.
        if self.rootless {
            self.skipped_devices.remove(&path);
        }
        let mut meta = Meta::of(entry)?;
        if self.rootless {
            // The owner record is ours to write; a layer's own is dropped
            // (as umoci does).
            meta.xattrs
                .retain(|(k, _)| k.as_bytes() != owner::XATTR.as_bytes());
            meta.owner = owner::encode(meta.uid, meta.gid);
        }
        let parent = path.parent().unwrap_or(Path::new(""));
        let spot = Spot {
            parent: self.dir(parent)?,
            name: path
                .file_name()
                .expect("cleaned path has a name")
                .to_os_string(),
            path,
        };
        let mut written = 0;
        match kind {
            EntryType::Directory => self.make_dir(&spot, &meta, stats)?,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                written = self.write_file(entry, &spot, &meta, stats)?;
            }
            EntryType::Symlink => self.make_symlink(entry, &spot, &meta, stats)?,
            EntryType::Link => self.make_hardlink(entry, &spot, stats)?,
            EntryType::Char | EntryType::Block if self.rootless => {
                // mknod(2) of a device needs privilege: the entry still
                // replaces what lower layers had there.
                self.clear_spot(&spot.parent, &spot.name, &spot.path)?;
                self.skipped_devices.insert(spot.path.clone());
                stats.skipped_devices += 1;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.make_node(entry, kind, &spot, &meta, stats)?;
            }
            other => {
                return Err(Error::Image(format!(
                    "layer entry {} has unsupported type {other:?}",
                    spot.shown()
                )));
            }
        }
        self.layer.insert(spot.path);
        Ok(written)
    }

    fn make_dir(&mut self, spot: &Spot, meta: &Meta, stats: &mut Stats) -> Result<()> {
        let (pfd, name) = (&*spot.parent, spot.name.as_os_str());
        let shown = || spot.shown();
        match mkdirat(pfd, name, Mode::from_bits_truncate(0o700)) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                let st = fstatat(pfd, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .ctx(Error::Image, || format!("stat {}", shown()))?;
                if !is_dir(st.st_mode) {
                    self.clear_spot(pfd, name, &spot.path)?;
                    mkdirat(pfd, name, Mode::from_bits_truncate(0o700))
                        .ctx(Error::Image, || format!("mkdir {}", shown()))?;
                }
            }
            Err(e) => return Err(e).ctx(Error::Image, || format!("mkdir {}", shown())),
        }
        self.chown(pfd, name, meta, &shown)?;
        if meta.has_xattrs() {
            // Writable for its owner until `finish`: user xattrs can be set
            // without privilege.
            let dir = open_dir_at(pfd, name, OFlag::O_RDONLY)
                .ctx(Error::Image, || format!("open {}", shown()))?;
            self.set_xattrs(
                &meta.xattrs,
                meta.owner.as_deref(),
                stats,
                &shown,
                |k, v| crate::sys::fsetxattr(dir.as_fd(), k, v),
            )?;
        }
        let real = self.real_path(pfd, &spot.path);
        self.dir_meta.insert(real, (meta.mode, meta.mtime));
        Ok(())
    }

    /// A regular file with the entry's contents; returns the bytes written.
    fn write_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        spot: &Spot,
        meta: &Meta,
        stats: &mut Stats,
    ) -> Result<u64> {
        let (pfd, name) = (&*spot.parent, spot.name.as_os_str());
        let shown = || spot.shown();
        let mode = meta.perm();
        let flags =
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        // Without privilege a user xattr needs write permission: the owner
        // may write until the mode is set at the end.
        let first = if self.rootless && meta.has_xattrs() {
            Mode::from_bits_truncate(meta.mode | 0o200)
        } else {
            mode
        };
        let fd = match openat(pfd, name, flags, first) {
            Err(Errno::EEXIST) => {
                self.clear_spot(pfd, name, &spot.path)?;
                openat(pfd, name, flags, first)
            }
            r => r,
        }
        .ctx(Error::Image, || format!("create {}", shown()))?;
        let mut file = File::from(fd);
        let mut written = 0;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Image(format!("read {}: {e}", shown()))),
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| Error::Image(format!("write {}: {e}", shown())))?;
            written += n as u64;
        }
        if !self.rootless {
            nix::unistd::fchown(
                &file,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .ctx(Error::Image, || format!("chown {}", shown()))?;
        }
        // After chown, which drops security.capability.
        self.set_xattrs(
            &meta.xattrs,
            meta.owner.as_deref(),
            stats,
            &shown,
            |k, v| crate::sys::fsetxattr(file.as_fd(), k, v),
        )?;
        if meta.special() || first != mode {
            nix::sys::stat::fchmod(&file, mode)
                .ctx(Error::Image, || format!("chmod {}", shown()))?;
        }
        let t = TimeSpec::new(meta.mtime, 0);
        nix::sys::stat::futimens(&file, &t, &t)
            .ctx(Error::Image, || format!("set times of {}", shown()))?;
        Ok(written)
    }

    fn make_symlink<R: Read>(
        &mut self,
        entry: &tar::Entry<R>,
        spot: &Spot,
        meta: &Meta,
        stats: &mut Stats,
    ) -> Result<()> {
        let (pfd, name) = (&*spot.parent, spot.name.as_os_str());
        let shown = || spot.shown();
        let target = link_target(entry, "symlink", &shown)?;
        self.create_at(pfd, name, &spot.path, "symlink", || {
            symlinkat(target.as_os_str(), pfd, name)
        })?;
        self.chown(pfd, name, meta, &shown)?;
        if meta.has_xattrs() {
            let p = fd_child_path(pfd, name);
            self.set_xattrs(
                &meta.xattrs,
                meta.owner.as_deref(),
                stats,
                &shown,
                |k, v| crate::sys::lsetxattr(&p, k, v),
            )?;
        }
        set_times_at(pfd, name, meta.mtime, &shown)
    }

    /// A hard link to an entry of this or a lower layer; rootless, a link
    /// to a device not made is not made either.
    fn make_hardlink<R: Read>(
        &mut self,
        entry: &tar::Entry<R>,
        spot: &Spot,
        stats: &mut Stats,
    ) -> Result<()> {
        let (pfd, name) = (&*spot.parent, spot.name.as_os_str());
        let shown = || spot.shown();
        let target_raw = link_target(entry, "hardlink", &shown)?;
        let target = clean_name(&target_raw)?
            .ok_or_else(|| Error::Image(format!("hardlink {} to the root", shown())))?;
        if target == spot.path {
            return Err(Error::Image(format!("hardlink {} to itself", shown())));
        }
        if self.skipped_devices.contains(&target) {
            self.clear_spot(pfd, name, &spot.path)?;
            self.skipped_devices.insert(spot.path.clone());
            stats.skipped_devices += 1;
            return Ok(());
        }
        // The link itself, not what it may point to, and never outside.
        let handle = self
            .root
            .resolve_nofollow(Path::new("/").join(&target))
            .map_err(|e| {
                Error::Image(format!(
                    "hardlink {} -> /{}: {e}",
                    shown(),
                    target.display()
                ))
            })?;
        let target_fd: OwnedFd = handle.into();
        self.create_at(pfd, name, &spot.path, "hardlink", || {
            link_fd_at(&target_fd, pfd, name)
        })
    }

    /// A character or block device (with privilege) or a fifo.
    fn make_node<R: Read>(
        &mut self,
        entry: &tar::Entry<R>,
        kind: EntryType,
        spot: &Spot,
        meta: &Meta,
        stats: &mut Stats,
    ) -> Result<()> {
        let (pfd, name) = (&*spot.parent, spot.name.as_os_str());
        let shown = || spot.shown();
        let mode = meta.perm();
        let (file_type, dev) = match kind {
            EntryType::Char => (SFlag::S_IFCHR, dev_of(entry)),
            EntryType::Block => (SFlag::S_IFBLK, dev_of(entry)),
            _ => (SFlag::S_IFIFO, 0),
        };
        self.create_at(pfd, name, &spot.path, "mknod", || {
            mknodat(pfd, name, file_type, mode, dev)
        })?;
        self.chown(pfd, name, meta, &shown)?;
        if meta.owner.is_some() {
            // The owner record only (Linux takes no user xattr on a fifo
            // today: then it is counted).
            let p = fd_child_path(pfd, name);
            self.set_xattrs(&[], meta.owner.as_deref(), stats, &shown, |k, v| {
                crate::sys::lsetxattr(&p, k, v)
            })?;
        }
        if meta.special() {
            fchmodat(pfd, name, mode, FchmodatFlags::FollowSymlink)
                .ctx(Error::Image, || format!("chmod {}", shown()))?;
        }
        set_times_at(pfd, name, meta.mtime, &shown)
    }

    /// Sets the entry's xattrs, then (rootless) its owner record, with
    /// `set`. Without privilege an xattr the kernel refuses with EPERM
    /// (`security.*`, `trusted.*`) is counted instead, and so is an owner
    /// record the entry or the filesystem takes no user xattr for.
    fn set_xattrs(
        &self,
        xattrs: &[(CString, Vec<u8>)],
        owner: Option<&[u8]>,
        stats: &mut Stats,
        shown: &dyn Fn() -> String,
        set: impl Fn(&CStr, &[u8]) -> std::result::Result<(), Errno>,
    ) -> Result<()> {
        for (k, v) in xattrs {
            match set(k, v) {
                Ok(()) => {}
                Err(Errno::EPERM) if self.rootless => {
                    let name = k.to_string_lossy().into_owned();
                    *stats.skipped_xattrs.entry(name).or_default() += 1;
                }
                Err(e) => {
                    return Err(e).ctx(Error::Image, || format!("set xattr {k:?} on {}", shown()));
                }
            }
        }
        if let Some(v) = owner {
            match set(owner::XATTR_C, v) {
                Ok(()) => {}
                Err(Errno::EPERM | Errno::EOPNOTSUPP) => stats.unrecorded_owners += 1,
                Err(e) => {
                    return Err(e).ctx(Error::Image, || {
                        format!("set xattr {:?} on {}", owner::XATTR, shown())
                    });
                }
            }
        }
        Ok(())
    }

    /// chown as the entry says; nothing without privilege (the caller owns
    /// everything, the owner goes to `user.rootlesscontainers`).
    fn chown(
        &self,
        pfd: &OwnedFd,
        name: &OsStr,
        meta: &Meta,
        shown: &dyn Fn() -> String,
    ) -> Result<()> {
        if self.rootless {
            return Ok(());
        }
        fchownat(
            pfd,
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .ctx(Error::Image, || format!("chown {}", shown()))
    }

    fn whiteout(&mut self, whiteout: Whiteout) -> Result<()> {
        match whiteout {
            Whiteout::Opaque(dir) => self.opaque(&dir),
            Whiteout::Remove(p) => {
                if self.layer.contains(&p) {
                    return Ok(()); // same layer: only lower layers are whited out
                }
                if self.layer.iter().any(|path| path.starts_with(&p)) {
                    return self.opaque(&p);
                }
                let parent = p.parent().unwrap_or(Path::new(""));
                let real = match self.root.resolve(Path::new("/").join(parent)) {
                    Ok(h) => self.real_path(&OwnedFd::from(h), &p),
                    Err(_) => p.clone(),
                };
                match self.root.remove_all(Path::new("/").join(&p)) {
                    Ok(()) => {}
                    Err(e) if crate::rootfs::is_enoent(&e) => {}
                    Err(e) => return Err(Error::Image(format!("whiteout /{}: {e}", p.display()))),
                }
                self.forget(&p);
                self.drop_meta(&real);
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
            if self.layer.iter().any(|path| path.starts_with(&child)) {
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
            self.drop_meta(&self.real_path(&dfd, &child));
        }
        self.forget_under(dir);
        self.layer.insert(dir.to_path_buf());
        Ok(())
    }

    /// Forgets the directory metadata of `rel` and everything under it
    /// (the tree was removed).
    fn drop_meta(&mut self, rel: &Path) {
        let gone: Vec<PathBuf> = self
            .dir_meta
            .range(rel.to_path_buf()..)
            .take_while(|(k, _)| k.starts_with(rel))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.dir_meta.remove(&k);
        }
    }

    /// Sets directories' modes and mtimes, deepest first, once every layer
    /// is in: upper layers add to and remove from lower layers' directories
    /// as they were made (writable, searchable), and a directory keeps the
    /// mtime of the last layer that has an entry for it.
    pub fn finish(&mut self) -> Result<()> {
        let mut dirs: Vec<(PathBuf, (u32, i64))> =
            std::mem::take(&mut self.dir_meta).into_iter().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        // Siblings are adjacent in this order: their parent is opened once.
        let mut last: Option<(PathBuf, Option<Rc<OwnedFd>>)> = None;
        for (p, (mode, mtime)) in dirs {
            let parent = p.parent().unwrap_or(Path::new(""));
            if last.as_ref().is_none_or(|(lp, _)| lp != parent) {
                last = Some((parent.to_path_buf(), self.open_nofollow(parent)));
            }
            let Some((_, Some(pfd))) = &last else {
                continue; // its parent went away with a removed tree
            };
            let name = p.file_name().expect("named");
            // The directory itself, never what a later entry put in its
            // place (a symlink could point outside the rootfs).
            let dfd = match open_dir_at(pfd, name, OFlag::O_RDONLY) {
                Ok(fd) => fd,
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => continue,
                Err(e) => return Err(e).ctx(Error::Image, || format!("open /{}", p.display())),
            };
            nix::sys::stat::fchmod(&dfd, Mode::from_bits_truncate(mode))
                .ctx(Error::Image, || format!("chmod /{}", p.display()))?;
            let t = TimeSpec::new(mtime, 0);
            nix::sys::stat::futimens(&dfd, &t, &t)
                .ctx(Error::Image, || format!("set times of /{}", p.display()))?;
        }
        Ok(())
    }

    /// Directory `rel` of the rootfs (O_PATH) opened component by component
    /// without following any symlink; `None` when it is not there.
    fn open_nofollow(&self, rel: &Path) -> Option<Rc<OwnedFd>> {
        let mut cur = self.dirs.get(Path::new("")).expect("the rootfs fd").clone();
        for c in rel.components() {
            cur = Rc::new(open_dir_at(&cur, c.as_os_str(), OFlag::O_PATH).ok()?);
        }
        Some(cur)
    }
}

/// Directory `name` in `dir`, never through a symlink.
fn open_dir_at<P: ?Sized + nix::NixPath>(
    dir: &OwnedFd,
    name: &P,
    how: OFlag,
) -> std::result::Result<OwnedFd, Errno> {
    openat(
        dir,
        name,
        how | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// A hard link `dir/name` to the inode of `target` (an O_PATH fd, a
/// symlink itself included). Linux before 6.10 refuses AT_EMPTY_PATH
/// without CAP_DAC_READ_SEARCH (ENOENT); then the fd's /proc/self/fd link
/// is followed instead, which leads to the same inode.
fn link_fd_at(target: &OwnedFd, dir: &OwnedFd, name: &OsStr) -> std::result::Result<(), Errno> {
    match linkat(target, "", dir, name, AtFlags::AT_EMPTY_PATH) {
        Err(Errno::ENOENT) => link_through_proc(target, dir, name),
        r => r,
    }
}

fn link_through_proc(
    target: &OwnedFd,
    dir: &OwnedFd,
    name: &OsStr,
) -> std::result::Result<(), Errno> {
    let proc = format!("/proc/self/fd/{}", target.as_raw_fd());
    linkat(
        nix::fcntl::AT_FDCWD,
        proc.as_str(),
        dir,
        name,
        AtFlags::AT_SYMLINK_FOLLOW,
    )
}

/// Sets atime and mtime of `dir/name` without following a symlink.
fn set_times_at(dir: &OwnedFd, name: &OsStr, mtime: i64, shown: &dyn Fn() -> String) -> Result<()> {
    let t = TimeSpec::new(mtime, 0);
    utimensat(dir, name, &t, &t, UtimensatFlags::NoFollowSymlink)
        .ctx(Error::Image, || format!("set times of {}", shown()))
}

fn fd_child_path(dir: &OwnedFd, name: &OsStr) -> CString {
    let mut v = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    v.extend_from_slice(name.as_bytes());
    CString::new(v).expect("no NUL in a file name")
}

fn dev_of<R: Read>(entry: &tar::Entry<R>) -> u64 {
    let h = entry.header();
    let major = h.device_major().ok().flatten().unwrap_or(0);
    let minor = h.device_minor().ok().flatten().unwrap_or(0);
    libc::makedev(major, minor)
}

/// Where an entry goes: its parent directory's fd, its name there and its
/// path in the rootfs.
struct Spot {
    parent: Rc<OwnedFd>,
    name: std::ffi::OsString,
    path: PathBuf,
}

impl Spot {
    /// The path as messages show it.
    fn shown(&self) -> String {
        format!("/{}", self.path.display())
    }
}

/// Ownership, mode, mtime and xattrs of an entry, PAX records included.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
    xattrs: Vec<(CString, Vec<u8>)>,
    /// Rootless: the `user.rootlesscontainers` value for uid:gid, if any.
    owner: Option<Vec<u8>>,
}

impl Meta {
    fn of<R: Read>(entry: &mut tar::Entry<R>) -> Result<Meta> {
        let h = entry.header();
        let field_error =
            |what: &str, e: io::Error| Error::Image(format!("layer entry {what}: {e}"));
        let mut m = Meta {
            uid: h.uid().map_err(|e| field_error("uid", e))? as u32,
            gid: h.gid().map_err(|e| field_error("gid", e))? as u32,
            mode: h.mode().map_err(|e| field_error("mode", e))? & 0o7777,
            mtime: h.mtime().map_err(|e| field_error("mtime", e))? as i64,
            xattrs: Vec::new(),
            owner: None,
        };
        if let Some(exts) = entry
            .pax_extensions()
            .map_err(|e| field_error("pax header", e))?
        {
            for ext in exts {
                let ext = ext.map_err(|e| field_error("pax header", e))?;
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

    fn has_xattrs(&self) -> bool {
        !self.xattrs.is_empty() || self.owner.is_some()
    }

    fn perm(&self) -> Mode {
        Mode::from_bits_truncate(self.mode)
    }

    /// setuid, setgid or sticky: chown, and a write without privilege,
    /// clear setuid/setgid, so such modes are set again afterwards.
    fn special(&self) -> bool {
        self.mode & 0o7000 != 0
    }
}

/// The target of a symlink or hard link entry (`kind` names it in errors).
fn link_target<R: Read>(
    entry: &tar::Entry<R>,
    kind: &str,
    shown: &dyn Fn() -> String,
) -> Result<PathBuf> {
    Ok(entry
        .link_name()
        .map_err(|e| Error::Image(format!("{kind} {}: {e}", shown())))?
        .ok_or_else(|| Error::Image(format!("{kind} {} has no target", shown())))?
        .into_owned())
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

    /// The fallback of kernels before 6.10: a link to the fd's inode, a
    /// symlink itself rather than what it points to.
    #[test]
    fn hard_links_through_proc() {
        use std::os::unix::fs::MetadataExt;
        let d = std::env::temp_dir().join(format!("ocirun-link-proc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("file"), "x").unwrap();
        std::os::unix::fs::symlink("file", d.join("sym")).unwrap();
        let dfd = openat(
            nix::fcntl::AT_FDCWD,
            &d,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        for (from, to) in [("file", "file2"), ("sym", "sym2")] {
            let t = openat(
                &dfd,
                from,
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .unwrap();
            link_through_proc(&t, &dfd, OsStr::new(to)).unwrap();
            let (a, b) = (
                std::fs::symlink_metadata(d.join(from)).unwrap(),
                std::fs::symlink_metadata(d.join(to)).unwrap(),
            );
            assert_eq!((a.ino(), a.nlink()), (b.ino(), 2), "{from} -> {to}");
        }
        assert!(
            std::fs::symlink_metadata(d.join("sym2"))
                .unwrap()
                .is_symlink()
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn rootless_summary_says_what_was_not_kept() {
        assert_eq!(Stats::default().rootless_summary(), None);
        let mut a = Stats {
            skipped_devices: 1,
            ..Stats::default()
        };
        a.skipped_xattrs.insert("security.capability".into(), 1);
        let mut b = Stats {
            skipped_devices: 2,
            unrecorded_owners: 1,
            ..Stats::default()
        };
        b.skipped_xattrs.insert("trusted.x".into(), 1);
        a.add(&b);
        assert_eq!(
            a.rootless_summary().unwrap(),
            "rootless unpack: 3 device nodes skipped (mknod needs privilege); \
             2 xattrs not set (security.capability, trusted.x: needs privilege); \
             1 owner not kept (user.rootlesscontainers: not allowed on symlinks \
             and fifos, or by the filesystem)"
        );
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
