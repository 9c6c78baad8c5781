//! Writes into procfs (sysctls, oom_score_adj) through a handle on a procfs
//! that libpathrs made and verified: a fresh detached instance
//! (`fsopen("proc")`/`fsmount`, falling back to an `open_tree` clone of a
//! mount checked to be procfs), entries opened beneath it with no symlink,
//! magic link or mount crossing. The container's /proc (whatever the image
//! or another container put there) is never used for these writes (the
//! CVE-2025-52881 class).

use std::io::Write;
use std::path::PathBuf;

use pathrs::flags::OpenFlags;
use pathrs::procfs::{ProcfsBase, ProcfsHandle, ProcfsHandleBuilder};

use crate::error::{Context, Error, Result};

pub struct Procfs(ProcfsHandle);

impl Procfs {
    /// A procfs of the caller's pid namespace, with /proc/sys visible.
    pub fn open() -> Result<Procfs> {
        ProcfsHandleBuilder::new()
            .unmasked()
            .build()
            .map(Procfs)
            .ctx(Error::Process, || "open a private procfs")
    }

    /// A new procfs instance of the caller's pid namespace (`fsopen`, never
    /// a clone of a mount that may belong to another pid namespace): the
    /// pids it shows are the ones fork returns here.
    pub fn open_own_pidns() -> Result<Procfs> {
        use rustix::mount::MountAttrFlags as A;
        let m = crate::sys::mount::new_instance(
            "proc",
            A::MOUNT_ATTR_NODEV | A::MOUNT_ATTR_NOEXEC | A::MOUNT_ATTR_NOSUID,
        )
        .ctx(Error::Process, || "mount a private procfs")?;
        ProcfsHandle::try_from_fd(m)
            .map(Procfs)
            .ctx(Error::Process, || "check the private procfs")
    }

    /// Writes `value` to /proc/`pid`/`name` (a child of ours, not reaped).
    pub fn write_pid(
        &self,
        pid: nix::unistd::Pid,
        name: &str,
        value: &str,
    ) -> std::result::Result<(), std::io::Error> {
        self.write(
            ProcfsBase::ProcPid(pid.as_raw() as u32),
            &PathBuf::from(name),
            value,
        )
    }

    /// Opens /proc/`pid`/ns/`ns` (a child of ours, not reaped).
    pub fn open_pid_ns(
        &self,
        pid: nix::unistd::Pid,
        ns: &str,
    ) -> std::result::Result<std::os::fd::OwnedFd, std::io::Error> {
        self.0
            .open_follow(
                ProcfsBase::ProcPid(pid.as_raw() as u32),
                format!("ns/{ns}"),
                OpenFlags::O_RDONLY | OpenFlags::O_CLOEXEC,
            )
            .map(std::os::fd::OwnedFd::from)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// Writes `value` to the sysctl `key` (`net.ipv4.ip_forward` is
    /// /proc/sys/net/ipv4/ip_forward) of the caller's namespaces.
    pub fn write_sysctl(&self, key: &str, value: &str) -> Result<()> {
        let sub = sysctl_path(key)?;
        self.write(ProcfsBase::ProcRoot, &sub, value)
            .ctx(Error::Process, || {
                format!("sysctl {key}={value} (/proc/{})", sub.display())
            })
    }

    /// Writes `value` to /proc/self/`name`.
    pub fn write_self(&self, name: &str, value: &str) -> Result<()> {
        self.write(ProcfsBase::ProcSelf, &PathBuf::from(name), value)
            .ctx(Error::Process, || {
                format!("write {value} to /proc/self/{name}")
            })
    }

    fn write(
        &self,
        base: ProcfsBase,
        sub: &std::path::Path,
        value: &str,
    ) -> std::result::Result<(), std::io::Error> {
        let mut f = self
            .0
            .open(base, sub, OpenFlags::O_WRONLY | OpenFlags::O_CLOEXEC)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        f.write_all(value.as_bytes())
    }
}

/// `a.b.c` to `sys/a/b/c`; a key that is empty or has empty, `.` or `..`
/// components names no sysctl.
fn sysctl_path(key: &str) -> Result<PathBuf> {
    let mut p = PathBuf::from("sys");
    for part in key.split('.') {
        if part.is_empty()
            || part == ".."
            || part.contains('/') && part.split('/').any(|s| s.is_empty() || s == "..")
        {
            return Err(Error::Spec(format!("sysctl {key:?} is not a sysctl name")));
        }
        p.push(part);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_names_map_to_proc_sys_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            PathBuf::from("sys/net/ipv4/ip_forward")
        );
        // Interface names may hold a dot as a slash (sysctl(8)'s convention).
        assert_eq!(
            sysctl_path("net.ipv4.conf.eth0/1.rp_filter").unwrap(),
            PathBuf::from("sys/net/ipv4/conf/eth0/1/rp_filter")
        );
        for invalid in ["", "net..x", "net.ipv4./", "net/../../x", "..", "a.b/../c"] {
            assert!(sysctl_path(invalid).is_err(), "{invalid:?} accepted");
        }
    }

    #[test]
    fn the_private_procfs_is_a_real_procfs_not_the_path_proc() {
        // Writes go to the same values /proc shows, read back through it.
        let p = Procfs::open().unwrap();
        let now = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap();
        p.write_self("oom_score_adj", now.trim()).unwrap();
        let e = p.write_sysctl("no.such.sysctl", "1").unwrap_err();
        assert!(e.to_string().contains("sysctl no.such.sysctl=1"), "{e}");
    }
}
