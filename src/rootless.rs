//! Rootless mode: the runtime run by an ordinary user (runc's `--rootless`).
//!
//! What it changes: the default state root (`$XDG_RUNTIME_DIR/ocirun`), a
//! config must have a user namespace mapping only the caller's own uid and
//! gid (checked before anything exists), the parent writes `deny` to the
//! child's `setgroups` before its `gid_map`, and only cgroups the user may
//! write (a delegated subtree) are made or joined (`cgroups::writable`).

use std::path::PathBuf;

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

use crate::error::{Error, Result, io_text};

/// `--rootless VALUE`: `Some(true|false)`, or `None` for auto.
pub fn parse_mode(v: Option<&str>) -> Result<Option<bool>> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("auto") => Ok(None),
        Some("true" | "1" | "t") => Ok(Some(true)),
        Some("false" | "0" | "f") => Ok(Some(false)),
        Some(other) => Err(Error::Usage(format!(
            "--rootless {other:?}: want true, false or auto"
        ))),
    }
}

/// Whether to run rootless: as asked, else (auto) when the effective uid is
/// not 0 or we are in a user namespace that maps a single uid.
pub fn detect(mode: Option<bool>) -> bool {
    if let Some(m) = mode {
        return m;
    }
    if !nix::unistd::geteuid().is_root() {
        return true;
    }
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| single_id_map(&m))
}

/// A uid_map of one line of size 1 (a user namespace made by an ordinary user).
pub fn single_id_map(text: &str) -> bool {
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|f: &Vec<&str>| !f.is_empty())
        .collect();
    matches!(lines.as_slice(), [f] if f.len() == 3 && f[2] == "1")
}

/// The state root without `--root`: `/run/ocirun` for root, else
/// `$XDG_RUNTIME_DIR/ocirun`, made 0700 with the sticky bit (so the XDG
/// cleanup leaves it alone, as runc does).
pub fn default_root() -> Result<PathBuf> {
    if nix::unistd::geteuid().is_root() {
        return Ok(PathBuf::from("/run/ocirun"));
    }
    let xdg = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|x| !x.is_empty())
        .ok_or_else(|| {
            Error::Usage(
                "XDG_RUNTIME_DIR is not set: give --root DIR (a directory you own) for the state of rootless containers"
                    .into(),
            )
        })?;
    let root = PathBuf::from(xdg).join("ocirun");
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o700).create(&root) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(Error::Usage(format!(
                "create state root {} (from XDG_RUNTIME_DIR): {}",
                root.display(),
                io_text(&e)
            )));
        }
    }
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o1700)).map_err(|e| {
        Error::Usage(format!(
            "chmod state root {} (from XDG_RUNTIME_DIR): {}",
            root.display(),
            io_text(&e)
        ))
    })?;
    Ok(root)
}

/// What a config must be to run rootless as `uid`/`gid`: a user namespace,
/// and (for a new one) mappings of only our own ids, one each.
pub fn check_spec(spec: &Spec, uid: u32, gid: u32) -> Result<()> {
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::Spec("rootless container requires a linux section".into()))?;
    let userns = linux
        .namespaces()
        .iter()
        .flatten()
        .find(|n| n.typ() == LinuxNamespaceType::User)
        .ok_or_else(|| {
            Error::Spec(
                "rootless container requires a user namespace (linux.namespaces has no \"user\")"
                    .into(),
            )
        })?;
    if userns.path().is_some() {
        return Ok(());
    }
    check_maps("uid", linux.uid_mappings().as_deref(), uid)?;
    check_maps("gid", linux.gid_mappings().as_deref(), gid)
}

fn check_maps(kind: &str, maps: Option<&[LinuxIdMapping]>, own: u32) -> Result<()> {
    let maps = maps.unwrap_or_default();
    let text = |m: &LinuxIdMapping| format!("{} {} {}", m.container_id(), m.host_id(), m.size());
    match maps {
        [] => Err(Error::Spec(format!(
            "rootless container requires linux.{kind}Mappings (one mapping of {kind} {own})"
        ))),
        [m] if m.host_id() == own && m.size() == 1 => Ok(()),
        _ => {
            let all: Vec<String> = maps.iter().map(text).collect();
            Err(Error::Spec(format!(
                "linux.{kind}Mappings [{}]: without privilege only your own {kind} {own} can be mapped (one id); other ids need newuidmap/newgidmap, which ocirun does not use yet",
                all.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode(None).unwrap(), None);
        assert_eq!(parse_mode(Some("auto")).unwrap(), None);
        assert_eq!(parse_mode(Some("true")).unwrap(), Some(true));
        assert_eq!(parse_mode(Some("false")).unwrap(), Some(false));
        assert!(parse_mode(Some("maybe")).is_err());
    }

    #[test]
    fn single_id_maps() {
        assert!(single_id_map("         0       1001          1\n"));
        assert!(!single_id_map("         0          0 4294967295\n"));
        assert!(!single_id_map("0 1001 1\n1 100000 65536\n"));
    }

    fn spec(uid_maps: &str) -> Spec {
        let mut s = crate::spec::default_spec(true).unwrap();
        let maps: Vec<LinuxIdMapping> = serde_json::from_str(uid_maps).unwrap();
        s.linux_mut().as_mut().unwrap().set_uid_mappings(Some(maps));
        s
    }

    #[test]
    fn own_ids_only() {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let own = format!(r#"[{{"containerID":0,"hostID":{uid},"size":1}}]"#);
        check_spec(&spec(&own), uid, gid).unwrap();
        let other = format!(r#"[{{"containerID":0,"hostID":{},"size":1}}]"#, uid + 1);
        let e = check_spec(&spec(&other), uid, gid).unwrap_err().to_string();
        assert!(e.contains("newuidmap"), "{e}");
        let multi = format!(
            r#"[{{"containerID":0,"hostID":{uid},"size":1}},{{"containerID":1,"hostID":100000,"size":65536}}]"#
        );
        assert!(check_spec(&spec(&multi), uid, gid).is_err());
        let mut no_userns = crate::spec::default_spec(false).unwrap();
        no_userns.linux_mut().as_mut().unwrap().set_resources(None);
        let e = check_spec(&no_userns, uid, gid).unwrap_err().to_string();
        assert!(e.contains("user namespace"), "{e}");
    }
}
