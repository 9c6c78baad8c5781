//! Cgroup placement behind one `Manager` trait, with a v2 (unified) and a
//! v1/hybrid back-end. Issue-2 scope: every container gets its own cgroup at
//! `cgroupsPath` in every hierarchy, and it is removed on delete.
//!
//! Why not cgroups-rs here: 0.5 pulls zbus (an async D-Bus stack) into every
//! build, and its v1 hierarchy ignores the hybrid `unified` mount that
//! containerd and runc expect a container to join too. Placement needs only
//! mkdir, a write to `cgroup.procs` and rmdir, which is what this does.

use std::fs;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io_text};

pub mod devices;

/// One mounted hierarchy and the container's directory in it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where the hierarchy is mounted on the host, e.g. `/sys/fs/cgroup/memory`.
    pub mount: PathBuf,
    /// `true` for cgroup2.
    pub v2: bool,
    /// For v1, the mount's controller options (`cpu,cpuacct`, `name=systemd`).
    pub controllers: String,
    /// The container's cgroup directory in this hierarchy.
    pub dir: PathBuf,
}

/// What every back-end does for a container.
pub trait Manager {
    /// Creates the container's cgroup directories.
    fn create(&self) -> Result<()>;
    /// Moves `pid` into the container's cgroup in every hierarchy.
    fn apply(&self, pid: Pid) -> Result<()>;
    /// The pids in the container's cgroup.
    fn procs(&self) -> Result<Vec<Pid>>;
    /// Removes the container's cgroup directories (missing ones are fine).
    fn destroy(&self) -> Result<()>;
    /// The hierarchies, for saving in state.json.
    fn hierarchies(&self) -> &[Hierarchy];
}

/// cgroup v2 only (`/sys/fs/cgroup` is cgroup2).
pub struct V2 {
    h: [Hierarchy; 1],
}

/// cgroup v1, with the hybrid `unified` cgroup2 mount joined too when present.
pub struct V1 {
    hs: Vec<Hierarchy>,
}

/// Builds the manager for a container from its cgroupsPath.
pub fn for_container(
    cgroups_path: Option<&Path>,
    id: &str,
    systemd: bool,
) -> Result<Box<dyn Manager>> {
    if systemd {
        return Err(Error::Cgroup(
            "the systemd cgroup driver (--systemd-cgroup) is not supported yet: use cgroupfs paths"
                .into(),
        ));
    }
    let rel = match cgroups_path {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from(id),
    };
    check_path(&rel)?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::Cgroup(format!("read /proc/self/mountinfo: {}", io_text(&e))))?;
    let own = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| Error::Cgroup(format!("read /proc/self/cgroup: {}", io_text(&e))))?;
    let hs = plan(&mountinfo, &own, &rel)?;
    Ok(from_hierarchies(hs))
}

/// Rebuilds a manager from the hierarchies saved in state.json.
pub fn from_hierarchies(hs: Vec<Hierarchy>) -> Box<dyn Manager> {
    if hs.len() == 1 && hs[0].v2 && hs[0].mount == Path::new("/sys/fs/cgroup") {
        let h = hs.into_iter().next().expect("one hierarchy");
        Box::new(V2 { h: [h] })
    } else {
        Box::new(V1 { hs })
    }
}

fn check_path(p: &Path) -> Result<()> {
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(Error::Cgroup(format!(
            "cgroupsPath {} must not contain \"..\"",
            p.display()
        )));
    }
    if p.to_string_lossy().contains(':') && !p.is_absolute() {
        return Err(Error::Cgroup(format!(
            "cgroupsPath {} looks like a systemd \"slice:prefix:name\" path, but the systemd cgroup driver is not supported yet",
            p.display()
        )));
    }
    Ok(())
}

struct Mount<'a> {
    root: &'a str,
    point: &'a str,
    fstype: &'a str,
    superopts: &'a str,
}

fn parse_mountinfo(text: &str) -> Vec<Mount<'_>> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let p: Vec<&str> = post.split(' ').collect();
            if f.len() < 5 || p.len() < 3 {
                return None;
            }
            Some(Mount {
                root: f[3],
                point: f[4],
                fstype: p[0],
                superopts: p[2],
            })
        })
        .collect()
}

/// Joins a cgroup path to a hierarchy mount, allowing for mounts whose root is
/// not the hierarchy root (as inside another container).
fn dir_in(mount: &Mount, cg: &Path) -> PathBuf {
    let rel = cg.strip_prefix(mount.root).unwrap_or(cg);
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    Path::new(mount.point).join(rel)
}

/// Pure planning: from mountinfo, our own /proc/self/cgroup and the requested
/// path, the container's directory in every hierarchy.
fn plan(mountinfo: &str, own: &str, rel: &Path) -> Result<Vec<Hierarchy>> {
    let mounts = parse_mountinfo(mountinfo);
    let target = |own_path: &str| -> PathBuf {
        if rel.is_absolute() {
            rel.to_path_buf()
        } else {
            Path::new(own_path).join(rel)
        }
    };
    let mut out = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let cg = target(path);
        if ctrls.is_empty() {
            // The unified hierarchy (pure v2, or hybrid's `unified` mount).
            if let Some(m) = mounts.iter().find(|m| m.fstype == "cgroup2") {
                out.push(Hierarchy {
                    mount: m.point.into(),
                    v2: true,
                    controllers: String::new(),
                    dir: dir_in(m, &cg),
                });
            }
            continue;
        }
        let wanted: Vec<&str> = ctrls.split(',').collect();
        let found = mounts.iter().find(|m| {
            m.fstype == "cgroup" && {
                let opts: Vec<&str> = m.superopts.split(',').collect();
                wanted.iter().all(|w| opts.contains(w))
            }
        });
        if let Some(m) = found {
            out.push(Hierarchy {
                mount: m.point.into(),
                v2: false,
                controllers: ctrls.to_string(),
                dir: dir_in(m, &cg),
            });
        }
    }
    if out.is_empty() {
        return Err(Error::Cgroup(
            "no cgroup hierarchy is mounted (looked in /proc/self/mountinfo)".into(),
        ));
    }
    // v1 before the unified mount, so v1 tools see the container first.
    out.sort_by_key(|h| h.v2);
    Ok(out)
}

fn mkdir_all(h: &Hierarchy) -> Result<()> {
    let cpuset = !h.v2 && h.controllers.split(',').any(|c| c == "cpuset");
    if !cpuset {
        return fs::create_dir_all(&h.dir).map_err(|e| {
            Error::Cgroup(format!(
                "create cgroup {}: {}",
                h.dir.display(),
                io_text(&e)
            ))
        });
    }
    // v1 cpuset: a new cgroup starts with empty cpus/mems and refuses tasks
    // until they are set; inherit them from the parent level by level.
    let rel = h.dir.strip_prefix(&h.mount).unwrap_or(&h.dir);
    let mut cur = h.mount.clone();
    for c in rel.components() {
        let parent = cur.clone();
        cur.push(c);
        match fs::create_dir(&cur) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(Error::Cgroup(format!(
                    "create cgroup {}: {}",
                    cur.display(),
                    io_text(&e)
                )));
            }
        }
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let mine = fs::read_to_string(cur.join(f)).unwrap_or_default();
            if mine.trim().is_empty() {
                let theirs = fs::read_to_string(parent.join(f)).unwrap_or_default();
                write(&cur.join(f), theirs.trim())?;
            }
        }
    }
    Ok(())
}

fn write(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(|e| {
        Error::Cgroup(format!(
            "write {value:?} to {}: {}",
            path.display(),
            io_text(&e)
        ))
    })
}

fn read_procs(dir: &Path) -> Result<Vec<Pid>> {
    let path = dir.join("cgroup.procs");
    match fs::read_to_string(&path) {
        Ok(t) => Ok(t
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .map(Pid::from_raw)
            .collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::Cgroup(format!(
            "read {}: {}",
            path.display(),
            io_text(&e)
        ))),
    }
}

fn rmdir(dir: &Path) -> Result<()> {
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Cgroup(format!(
            "remove cgroup {}: {}",
            dir.display(),
            io_text(&e)
        ))),
    }
}

impl Manager for V2 {
    fn create(&self) -> Result<()> {
        mkdir_all(&self.h[0])
    }
    fn apply(&self, pid: Pid) -> Result<()> {
        write(&self.h[0].dir.join("cgroup.procs"), &pid.to_string())
    }
    fn procs(&self) -> Result<Vec<Pid>> {
        read_procs(&self.h[0].dir)
    }
    fn destroy(&self) -> Result<()> {
        rmdir(&self.h[0].dir)
    }
    fn hierarchies(&self) -> &[Hierarchy] {
        &self.h
    }
}

impl Manager for V1 {
    fn create(&self) -> Result<()> {
        self.hs.iter().try_for_each(mkdir_all)
    }
    fn apply(&self, pid: Pid) -> Result<()> {
        let p = pid.to_string();
        self.hs
            .iter()
            .try_for_each(|h| write(&h.dir.join("cgroup.procs"), &p))
    }
    fn procs(&self) -> Result<Vec<Pid>> {
        // Every process is in every hierarchy; prefer one that is always there.
        let h = self
            .hs
            .iter()
            .find(|h| h.controllers == "pids" || h.controllers == "freezer")
            .or(self.hs.first());
        h.map_or(Ok(Vec::new()), |h| read_procs(&h.dir))
    }
    fn destroy(&self) -> Result<()> {
        let mut first_err = None;
        for h in &self.hs {
            if let Err(e) = rmdir(&h.dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
    fn hierarchies(&self) -> &[Hierarchy] {
        &self.hs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
";
    const HYBRID_OWN: &str = "4:memory:/user/me\n3:cpu,cpuacct:/\n1:name=systemd:/\n0::/\n";

    #[test]
    fn hybrid_places_in_every_v1_controller_and_unified() {
        let hs = plan(HYBRID, HYBRID_OWN, Path::new("/c1")).unwrap();
        let dirs: Vec<_> = hs
            .iter()
            .map(|h| h.dir.to_str().unwrap().to_string())
            .collect();
        assert_eq!(
            dirs,
            [
                "/sys/fs/cgroup/memory/c1",
                "/sys/fs/cgroup/cpu,cpuacct/c1",
                "/sys/fs/cgroup/systemd/c1",
                "/sys/fs/cgroup/unified/c1"
            ]
        );
    }

    #[test]
    fn relative_path_is_under_our_own_cgroup() {
        let hs = plan(HYBRID, HYBRID_OWN, Path::new("x/y")).unwrap();
        assert_eq!(hs[0].dir, Path::new("/sys/fs/cgroup/memory/user/me/x/y"));
        assert_eq!(hs[1].dir, Path::new("/sys/fs/cgroup/cpu,cpuacct/x/y"));
    }

    #[test]
    fn pure_v2() {
        let mi = "25 20 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let hs = plan(mi, "0::/init.scope\n", Path::new("/a/b")).unwrap();
        assert_eq!(hs.len(), 1);
        assert!(hs[0].v2);
        assert_eq!(hs[0].dir, Path::new("/sys/fs/cgroup/a/b"));
        let m = from_hierarchies(hs);
        assert_eq!(m.hierarchies().len(), 1);
    }

    #[test]
    fn mount_root_not_slash() {
        let mi = "25 20 0:22 /outer /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let hs = plan(mi, "0::/outer/me\n", Path::new("c")).unwrap();
        assert_eq!(hs[0].dir, Path::new("/sys/fs/cgroup/me/c"));
    }

    #[test]
    fn bad_paths() {
        assert!(check_path(Path::new("/a/../b")).is_err());
        assert!(check_path(Path::new("system.slice:ocirun:x")).is_err());
        assert!(check_path(Path::new("/ok/path")).is_ok());
    }
}
