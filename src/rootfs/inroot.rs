//! Paths inside the container's root, resolved by the kernel: every lookup
//! is one `openat2(2)` from an fd on the root with `RESOLVE_IN_ROOT` (a
//! symlink or `..` cannot climb above it) and `RESOLVE_NO_MAGICLINKS` (no
//! /proc/self/fd jumps). New entries are made relative to an fd on their
//! parent, never through a path the rootfs could redirect.
//!
//! This is the containment libpathrs gives through the same syscall on these
//! kernels (Linux >= 5.6). libpathrs is still what the unpacker and the exec
//! paths use; this start path does not, because libpathrs's `Root` checks
//! its procfs handle on every step and builds each error (a missing
//! mountpoint is an expected one) with a /proc lookup of the fd for its
//! message: 85 syscalls to make the /dev/shm mountpoint, about 1,500 of the
//! 2,000 a default container's init made (docs/performance.md).

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// The container's root directory, as an fd.
pub struct RootDir {
    fd: OwnedFd,
}

type R<T> = std::result::Result<T, Errno>;

const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);
/// `IN_ROOT`, refusing every symlink on the way (ELOOP).
const PLAIN: ResolveFlags = IN_ROOT.union(ResolveFlags::NO_SYMLINKS);

/// Where a path is when it has no `..` and no symlink is on the way to it
/// (`RootDir::plain`).
pub enum Plain {
    /// There: an O_PATH fd on it, the one `resolve` gives.
    Found(OwnedFd),
    /// Not there: an fd on its deepest ancestor that is, a directory, and
    /// how many of the path's names lead to that ancestor.
    Missing(OwnedFd, usize),
}

impl RootDir {
    /// Opens `path` (a host path) as the root.
    pub fn open(path: &Path) -> R<RootDir> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(RootDir { fd })
    }

    fn openat2(&self, path: &Path, flags: OFlags) -> R<OwnedFd> {
        self.openat2_with(path, flags, IN_ROOT)
    }

    fn openat2_with(&self, path: &Path, flags: OFlags, resolve: ResolveFlags) -> R<OwnedFd> {
        let rel = relative(path);
        // The kernel answers EAGAIN when a rename or mount raced with a `..`
        // lookup: ask again, a bounded number of times (as libpathrs does).
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(&self.fd, rel, flags, Mode::empty(), resolve) {
                Err(Errno::AGAIN) if tries < 32 => tries += 1,
                r => return r,
            }
        }
    }

    /// An O_PATH fd on `path`, a final symlink followed (inside the root).
    pub fn resolve(&self, path: &Path) -> R<OwnedFd> {
        self.openat2(path, OFlags::PATH | OFlags::CLOEXEC)
    }

    /// An O_PATH fd on `path` itself, a symlink not followed.
    pub fn resolve_nofollow(&self, path: &Path) -> R<OwnedFd> {
        self.openat2(path, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC)
    }

    fn dir(&self, path: &Path) -> R<OwnedFd> {
        self.openat2(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC)
    }

    /// `path` looked up going down only: no `..` in it and no symlink on the
    /// way, `path` itself included. None when it has a `..`, a symlink is
    /// met or a lookup fails otherwise than with ENOENT: the caller then
    /// takes the general way. Such a path cannot lead above the root, and
    /// `resolve` would find the same file.
    pub fn plain(&self, path: &Path) -> Option<Plain> {
        let names = names(path);
        if names.iter().any(|n| *n == "..") {
            return None;
        }
        match self.openat2_with(path, OFlags::PATH | OFlags::CLOEXEC, PLAIN) {
            Ok(fd) => return Some(Plain::Found(fd)),
            Err(Errno::NOENT) => {}
            Err(_) => return None,
        }
        let dir = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        for have in (0..names.len()).rev() {
            match self.openat2_with(&join(&names[..have]), dir, PLAIN) {
                Ok(fd) => return Some(Plain::Missing(fd, have)),
                Err(Errno::NOENT) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// The directory `path` looked up as `plain` does (no `..`, no symlink
    /// on the way); None when that fails in any way.
    pub fn plain_dir(&self, path: &Path) -> Option<OwnedFd> {
        if names(path).iter().any(|n| *n == "..") {
            return None;
        }
        let dir = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        self.openat2_with(path, dir, PLAIN).ok()
    }

    /// The target of `path` when it is a symlink; None when it is something
    /// else or is not there.
    pub fn readlink(&self, path: &Path) -> Option<PathBuf> {
        let fd = self.resolve_nofollow(path).ok()?;
        let st = rustix::fs::fstat(&fd).ok()?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
            return None;
        }
        let target = rustix::fs::readlinkat(&fd, "", Vec::new()).ok()?;
        Some(PathBuf::from(std::ffi::OsString::from_vec(
            target.into_bytes(),
        )))
    }

    /// The directory `path`, made with every missing parent (mode `mode`,
    /// less the umask). Each new directory is made relative to an fd on its
    /// parent, then looked up again from the root. The parent is tried
    /// first, then its parent, up to the deepest directory already there:
    /// usually only the last component is missing.
    pub fn mkdir_all(&self, path: &Path, mode: u32) -> R<OwnedFd> {
        match self.dir(path) {
            Err(Errno::NOENT) => {}
            r => return r,
        }
        let names = names(path);
        let mut have = names.len();
        let parent = loop {
            if have == 0 {
                return Err(Errno::NOENT);
            }
            have -= 1;
            match self.dir(&join(&names[..have])) {
                Err(Errno::NOENT) => {}
                r => break r?,
            }
        };
        self.mkdir_from(parent, &names, have, mode)
    }

    /// The directory `path` made below `ancestor`, the directory its first
    /// `have` names lead to (as `Plain::Missing` gives it), as `mkdir_all`
    /// makes it.
    pub fn mkdir_below(
        &self,
        ancestor: OwnedFd,
        have: usize,
        path: &Path,
        mode: u32,
    ) -> R<OwnedFd> {
        self.mkdir_from(ancestor, &names(path), have, mode)
    }

    /// Makes `names[have..]` below `parent`, the directory `names[..have]`,
    /// each new one looked up again from the root.
    fn mkdir_from(
        &self,
        mut parent: OwnedFd,
        names: &[&OsStr],
        have: usize,
        mode: u32,
    ) -> R<OwnedFd> {
        for (i, name) in names.iter().enumerate().skip(have) {
            if *name != ".." {
                match rustix::fs::mkdirat(&parent, *name, Mode::from_raw_mode(mode)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e),
                }
            }
            parent = self.dir(&join(&names[..=i]))?;
        }
        Ok(parent)
    }

    /// The directory `path`, made in `parent` (an fd on its parent looked up
    /// in the root) when missing, then looked up again from the root.
    pub fn mkdir_child(&self, parent: &impl AsFd, path: &Path, mode: u32) -> R<OwnedFd> {
        let name = match path.components().next_back() {
            Some(Component::Normal(n)) => n,
            _ => return Err(Errno::INVAL),
        };
        match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(mode)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e),
        }
        self.dir(path)
    }

    /// The parent directory of `path` and the last component's name.
    fn parent_of<'p>(&self, path: &'p Path) -> R<(OwnedFd, &'p OsStr)> {
        let name = match path.components().next_back() {
            Some(Component::Normal(n)) => n,
            _ => return Err(Errno::INVAL),
        };
        let parent = path.parent().unwrap_or(Path::new("/"));
        Ok((self.dir(parent)?, name))
    }

    /// A new empty regular file (EEXIST when something is there).
    pub fn create_file(&self, path: &Path, mode: u32) -> R<()> {
        let (parent, name) = self.parent_of(path)?;
        create_file_in(&parent, name, mode)
    }

    /// A device node or fifo (EEXIST when something is there).
    pub fn mknod(&self, path: &Path, kind: FileType, mode: u32, dev: u64) -> R<()> {
        let (parent, name) = self.parent_of(path)?;
        rustix::fs::mknodat(&parent, name, kind, Mode::from_raw_mode(mode), dev)
    }

    /// A symlink `path` -> `target` (EEXIST when something is there).
    pub fn symlink(&self, path: &Path, target: &Path) -> R<()> {
        let (parent, name) = self.parent_of(path)?;
        rustix::fs::symlinkat(target, &parent, name)
    }

    /// Removes the non-directory `path`.
    pub fn remove_file(&self, path: &Path) -> R<()> {
        let (parent, name) = self.parent_of(path)?;
        rustix::fs::unlinkat(&parent, name, AtFlags::empty())
    }
}

impl AsFd for RootDir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A new empty regular file `name` in the directory `parent` (EEXIST when
/// something is there, a symlink too).
pub fn create_file_in(parent: &impl AsFd, name: &OsStr, mode: u32) -> R<()> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map(drop)
}

/// The components of `path` to look up in turn: its names and `..`.
fn names(path: &Path) -> Vec<&OsStr> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            Component::ParentDir => Some(OsStr::new("..")),
            _ => None,
        })
        .collect()
}

/// The absolute path of `names`.
fn join(names: &[&OsStr]) -> PathBuf {
    let mut p = PathBuf::from("/");
    p.extend(names);
    p
}

/// `path` relative to the root: `/a/b` is `a/b`, `/` is `.`.
fn relative(path: &Path) -> &Path {
    let rel = path.strip_prefix("/").unwrap_or(path);
    if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ocirun-inroot-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn symlinks_and_dotdot_stay_inside_the_root() {
        let d = scratch("climb");
        let outside = d.join("outside");
        let root = d.join("root");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("outside")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("up")).unwrap();
        std::os::unix::fs::symlink("/", root.join("abs")).unwrap();
        let r = RootDir::open(&root).unwrap();
        // Made through the links, the directories land inside the root.
        r.mkdir_all(Path::new("/up/a"), 0o755).unwrap();
        r.mkdir_all(Path::new("/../../b/c"), 0o755).unwrap();
        r.mkdir_all(Path::new("/abs/etc/d"), 0o755).unwrap();
        assert!(root.join("outside/a").is_dir());
        assert!(root.join("b/c").is_dir());
        assert!(root.join("etc/d").is_dir());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        r.create_file(Path::new("/up/f"), 0o644).unwrap();
        assert!(root.join("outside/f").is_file());
        assert_eq!(
            r.create_file(Path::new("/outside/f"), 0o644),
            Err(Errno::EXIST),
            "an existing entry is not replaced"
        );
        assert_eq!(
            r.readlink(Path::new("/up")),
            Some(PathBuf::from("../outside"))
        );
        assert_eq!(r.readlink(Path::new("/etc")), None);
        assert_eq!(r.readlink(Path::new("/nothing")), None);
        r.symlink(Path::new("/etc/l"), Path::new("x")).unwrap();
        assert_eq!(r.readlink(Path::new("/etc/l")), Some(PathBuf::from("x")));
        r.remove_file(Path::new("/etc/l")).unwrap();
        assert!(!root.join("etc/l").exists());
        assert_eq!(r.resolve(Path::new("/nothing")).err(), Some(Errno::NOENT));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn plain_goes_down_only() {
        let d = scratch("plain");
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/f"), "").unwrap();
        std::os::unix::fs::symlink("a", d.join("l")).unwrap();
        std::os::unix::fs::symlink("b", d.join("a/l")).unwrap();
        let r = RootDir::open(&d).unwrap();
        assert!(matches!(r.plain(Path::new("/a/b")), Some(Plain::Found(_))));
        assert!(matches!(r.plain(Path::new("/a/f")), Some(Plain::Found(_))));
        let Some(Plain::Missing(fd, have)) = r.plain(Path::new("/a/b/x/y")) else {
            panic!("/a/b/x/y is missing below /a/b");
        };
        assert_eq!(have, 2);
        let made = r.mkdir_below(fd, have, Path::new("/a/b/x/y"), 0o755);
        assert!(made.is_ok() && d.join("a/b/x/y").is_dir());
        // A symlink on the way or at the end, a `..` or a file in the way:
        // the general way.
        for p in ["/l/b", "/l", "/a/l", "/a/l/x", "/a/../a/b", "/a/f/x"] {
            assert!(r.plain(Path::new(p)).is_none(), "{p}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn plain_dir_is_a_directory_reached_going_down() {
        let d = scratch("plain-dir");
        std::fs::create_dir_all(d.join("a")).unwrap();
        std::fs::write(d.join("f"), "").unwrap();
        std::os::unix::fs::symlink("a", d.join("l")).unwrap();
        let r = RootDir::open(&d).unwrap();
        assert!(r.plain_dir(Path::new("/a")).is_some());
        for p in ["/f", "/l", "/nothing", "/a/../a"] {
            assert!(r.plain_dir(Path::new(p)).is_none(), "{p}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn mkdir_child_makes_one_directory_or_finds_it() {
        let d = scratch("child");
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::os::unix::fs::symlink("b", d.join("a/l")).unwrap();
        let r = RootDir::open(&d).unwrap();
        let holder = r.resolve(Path::new("/a")).unwrap();
        assert!(r.mkdir_child(&holder, Path::new("/a/c"), 0o755).is_ok());
        assert!(d.join("a/c").is_dir());
        assert!(r.mkdir_child(&holder, Path::new("/a/c"), 0o755).is_ok());
        assert!(r.mkdir_child(&holder, Path::new("/a/l"), 0o755).is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn mkdir_all_makes_only_what_is_missing() {
        let d = scratch("deep");
        std::fs::create_dir_all(d.join("a")).unwrap();
        std::os::unix::fs::symlink("/a", d.join("l")).unwrap();
        std::os::unix::fs::symlink("/nothing/here", d.join("dangling")).unwrap();
        let r = RootDir::open(&d).unwrap();
        r.mkdir_all(Path::new("/l/x/y/z"), 0o755).unwrap();
        assert!(d.join("a/x/y/z").is_dir());
        r.mkdir_all(Path::new("/a/x/../w"), 0o755).unwrap();
        assert!(d.join("a/w").is_dir());
        r.mkdir_all(Path::new("/"), 0o755).unwrap();
        assert_eq!(
            r.mkdir_all(Path::new("/dangling/x"), 0o755).err(),
            Some(Errno::NOENT),
            "nothing is made through a dangling link"
        );
        assert!(!d.join("nothing").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_file_in_the_way_of_mkdir_all_is_an_error() {
        let d = scratch("file");
        std::fs::write(d.join("f"), "").unwrap();
        let r = RootDir::open(&d).unwrap();
        assert_eq!(
            r.mkdir_all(Path::new("/f/x"), 0o755).err(),
            Some(Errno::NOTDIR)
        );
        assert_eq!(
            r.mkdir_all(Path::new("/f"), 0o755).err(),
            Some(Errno::NOTDIR)
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
