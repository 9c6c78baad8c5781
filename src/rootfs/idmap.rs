//! Idmapped bind mounts: the `idmap` and `ridmap` options with a mount's
//! own `uidMappings` and `gidMappings`. A user namespace is made with those
//! mappings (a child that only waits, its maps written from our side), the
//! source tree is cloned with `open_tree`, given the namespace's idmapping
//! with `mount_setattr(MOUNT_ATTR_IDMAP)` and moved onto the destination.
//! A file the source's filesystem says is owned by a mapping's
//! `containerID` is seen through the mount as owned by its `hostID`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxIdMapping, Mount};

use super::options::Parsed;
use super::procfs::Procfs;
use crate::error::{Context, Error, Result};
use crate::sys::Forked;
use crate::sys::mount::{self, MountAttr};

/// What an idmapped mount needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// `ridmap`: the submounts of an `rbind` are idmapped too.
    pub recursive: bool,
    pub uid: &'a [LinuxIdMapping],
    pub gid: &'a [LinuxIdMapping],
}

/// Whether the mount is a bind mount (`bind`/`rbind`, or type `bind`).
pub fn is_bind(m: &Mount, opts: &Parsed) -> bool {
    m.typ().as_deref() == Some("bind") || opts.is_bind()
}

/// The idmapping `m` asks for, if any, checked against the runtime-spec
/// rules. Mappings without `idmap` or `ridmap` idmap the mount itself (the
/// spec asks configs to name the option; runc and crun accept them alone).
/// `idmap` without mappings is an error: the container's own mappings are
/// not used.
pub fn request<'a>(m: &'a Mount, opts: &Parsed) -> Result<Option<Request<'a>>> {
    let dest = m.destination().display();
    let uid = m.uid_mappings().as_deref().filter(|v| !v.is_empty());
    let gid = m.gid_mappings().as_deref().filter(|v| !v.is_empty());
    let word = match opts.idmap {
        Some(true) => "ridmap",
        Some(false) => "idmap",
        None if uid.is_none() && gid.is_none() => return Ok(None),
        None => "uidMappings",
    };
    let (uid, gid) = match (uid, gid) {
        (Some(u), Some(g)) => (u, g),
        (None, None) => {
            return Err(Error::Spec(format!(
                "mount on {dest}: {word} needs the mount's own uidMappings and gidMappings"
            )));
        }
        _ => {
            return Err(Error::Spec(format!(
                "mount on {dest}: uidMappings and gidMappings must be given together"
            )));
        }
    };
    if !is_bind(m, opts) {
        return Err(Error::Spec(format!(
            "mount on {dest}: only bind mounts can be idmapped, not type {:?}",
            m.typ().as_deref().unwrap_or("")
        )));
    }
    Ok(Some(Request {
        recursive: opts.idmap == Some(true),
        uid,
        gid,
    }))
}

/// Mappings in the form `/proc/<pid>/uid_map` takes: `inside outside count`
/// lines.
pub fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// A child in a new user namespace, killed and reaped when dropped.
struct Holder(Pid);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGKILL);
        while waitpid(self.0, None) == Err(Errno::EINTR) {}
    }
}

/// A user namespace with the request's mappings, as an fd of it. `procfs`
/// must be a procfs of our own pid namespace, where the child's pid is the
/// one fork returned.
pub fn user_namespace(procfs: &Procfs, r: &Request, dest: &Path) -> Result<OwnedFd> {
    let parent = nix::unistd::getpid();
    let child = match crate::sys::clone_process(libc::CLONE_NEWUSER).ctx(Error::Rootfs, || {
        format!(
            "make a user namespace for the idmapped mount on {}",
            dest.display()
        )
    })? {
        Forked::Child => {
            // Hold the namespace until the parent has its fd and kills us.
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            if nix::unistd::getppid() != parent {
                // The parent is already gone: nobody will kill us.
                crate::sys::exit_now(0);
            }
            loop {
                nix::unistd::pause();
            }
        }
        Forked::Parent(pid) => Holder(pid),
    };
    for (file, maps) in [("uid_map", r.uid), ("gid_map", r.gid)] {
        procfs
            .write_pid(child.0, file, &map_text(maps))
            .ctx(Error::Rootfs, || {
                format!("idmapped mount on {}: write {file}", dest.display())
            })?;
    }
    procfs.open_pid_ns(child.0, "user").ctx(Error::Rootfs, || {
        format!(
            "idmapped mount on {}: open the user namespace",
            dest.display()
        )
    })
}

/// Binds `src` onto `target` (a handle on the mountpoint in the rootfs)
/// with the idmapping of `userns`: a detached clone of the source (with its
/// submounts for `rbind`), idmapped (its submounts too when `recursive`),
/// then moved onto `target`.
pub fn bind(
    src: &Path,
    target: BorrowedFd<'_>,
    rbind: bool,
    recursive: bool,
    userns: BorrowedFd<'_>,
    dest: &Path,
) -> Result<()> {
    let fd = open(src, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(Error::Rootfs, || {
            format!("open bind source {}", src.display())
        })?;
    let tree = mount::clone_tree(fd.as_fd(), rbind).ctx(Error::Rootfs, || {
        format!("clone the mounts at {}", src.display())
    })?;
    let attr = MountAttr {
        set: libc::MOUNT_ATTR_IDMAP,
        clear: 0,
        userns: Some(userns),
    };
    mount::setattr(tree.as_fd(), recursive, &attr).ctx(Error::Rootfs, || {
        format!(
            "mount_setattr {} of {} for {}",
            if recursive { "ridmap" } else { "idmap" },
            src.display(),
            dest.display()
        )
    })?;
    mount::move_onto(tree.as_fd(), target).ctx(Error::Rootfs, || {
        format!(
            "move the idmapped {} onto {}",
            src.display(),
            dest.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::options::parse;
    use serde_json::json;

    fn mount(v: serde_json::Value) -> Mount {
        serde_json::from_value(v).unwrap()
    }

    fn maps() -> serde_json::Value {
        json!([{"containerID": 1000, "hostID": 0, "size": 1}])
    }

    fn check(m: &Mount) -> Result<Option<bool>> {
        let opts = parse(m.options().as_deref().unwrap_or_default())?;
        Ok(request(m, &opts)?.map(|r| r.recursive))
    }

    #[test]
    fn idmap_and_ridmap_with_mappings() {
        let m = mount(
            json!({"destination": "/m", "source": "/s", "options": ["rbind", "ridmap"],
                             "uidMappings": maps(), "gidMappings": maps()}),
        );
        assert_eq!(check(&m).unwrap(), Some(true));
        let m = mount(json!({"destination": "/m", "type": "bind", "source": "/s",
                             "options": ["idmap"], "uidMappings": maps(), "gidMappings": maps()}));
        assert_eq!(check(&m).unwrap(), Some(false));
        // Mappings alone idmap the mount itself.
        let m = mount(
            json!({"destination": "/m", "source": "/s", "options": ["rbind"],
                             "uidMappings": maps(), "gidMappings": maps()}),
        );
        assert_eq!(check(&m).unwrap(), Some(false));
        let m = mount(json!({"destination": "/m", "source": "/s", "options": ["rbind"]}));
        assert_eq!(check(&m).unwrap(), None);
    }

    #[test]
    fn incomplete_or_misplaced_idmaps_are_errors_naming_the_mount() {
        for (m, want) in [
            (
                json!({"destination": "/m", "source": "/s", "options": ["bind", "idmap"]}),
                "idmap needs the mount's own uidMappings",
            ),
            (
                json!({"destination": "/m", "source": "/s", "options": ["bind", "idmap"],
                       "uidMappings": maps()}),
                "must be given together",
            ),
            (
                json!({"destination": "/m", "source": "/s", "options": ["bind"],
                       "gidMappings": maps()}),
                "must be given together",
            ),
            (
                json!({"destination": "/m", "type": "tmpfs", "source": "tmpfs",
                       "options": ["ridmap"], "uidMappings": maps(), "gidMappings": maps()}),
                "only bind mounts can be idmapped, not type \"tmpfs\"",
            ),
        ] {
            let e = check(&mount(m)).unwrap_err().to_string();
            assert!(e.starts_with("mount on /m: "), "{e}");
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn maps_are_written_inside_outside_count() {
        let m: Vec<LinuxIdMapping> = serde_json::from_value(json!([
            {"containerID": 0, "hostID": 100000, "size": 65536},
            {"containerID": 65536, "hostID": 5, "size": 1}
        ]))
        .unwrap();
        assert_eq!(map_text(&m), "0 100000 65536\n65536 5 1\n");
    }
}
