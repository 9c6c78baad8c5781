//! Rootless mode: the runtime run by an ordinary user (runc's `--rootless`).
//!
//! What it changes: the default state root (`$XDG_RUNTIME_DIR/ocirun`), a
//! config must have a user namespace mapping only the caller's own uid and
//! gid (checked before anything exists), the parent writes `deny` to the
//! child's `setgroups` before its `gid_map`, and only cgroups the user may
//! write (a delegated subtree) are made or joined (`cgroups::writable`).

use std::path::PathBuf;

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

use crate::error::{Context, Error, Result};

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
    own_uid_map().is_some_and(single_id_map)
}

/// Whether only the cgroups the user may write are made or joined (runc's
/// rootless cgroup manager): as asked, else (auto) when rootless or inside
/// a user namespace (a runtime started by rootless podman is uid 0 in the
/// user namespace podman made, and may write no cgroup it was not given).
pub fn cgroups_rootless(mode: Option<bool>, rootless: bool) -> bool {
    mode.unwrap_or_else(|| rootless || in_user_namespace())
}

/// Whether we run in a user namespace other than the initial one: the one
/// the runtime started in (see `own_uid_map`).
pub fn in_user_namespace() -> bool {
    own_uid_map().is_some_and(|m| !initial_id_map(m))
}

/// /proc/self/uid_map as the runtime started: read once per process (and
/// inherited by its forks). Asked before any user namespace is joined or
/// made: a process that has changed its own must not ask.
fn own_uid_map() -> Option<&'static str> {
    static MAP: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    MAP.get_or_init(|| crate::sys::fd::read_text("/proc/self/uid_map").ok())
        .as_deref()
}

/// The initial user namespace's uid_map: every id, as itself.
fn initial_id_map(text: &str) -> bool {
    let f: Vec<&str> = text.split_whitespace().collect();
    f == ["0", "0", "4294967295"]
}

/// A uid_map of one line of size 1 (a user namespace made by an ordinary user).
pub fn single_id_map(text: &str) -> bool {
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|line| line.split_whitespace().collect())
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
            return Err(e).ctx(Error::Usage, || {
                format!(
                    "create state root {} (from XDG_RUNTIME_DIR)",
                    root.display()
                )
            });
        }
    }
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o1700))
        .ctx(Error::Usage, || {
            format!("chmod state root {} (from XDG_RUNTIME_DIR)", root.display())
        })?;
    Ok(root)
}

/// How the parent writes a new user namespace's maps without privilege:
/// directly (only the caller's own id, `setgroups` denied first), or through
/// the setuid helpers `newuidmap`/`newgidmap` for ranges in /etc/subuid and
/// /etc/subgid (as runc and podman do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapTools {
    /// `newuidmap`, when `linux.uidMappings` needs it.
    pub uid: Option<PathBuf>,
    /// `newgidmap`, when `linux.gidMappings` needs it.
    pub gid: Option<PathBuf>,
}

/// What a config must be to run rootless as `uid`/`gid`: a user namespace,
/// and (for a new one) mappings of our own ids, or of ranges delegated to us
/// in /etc/subuid and /etc/subgid (written by newuidmap/newgidmap).
pub fn check_spec(spec: &Spec, uid: u32, gid: u32) -> Result<MapTools> {
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
        return Ok(MapTools::default());
    }
    let passwd = crate::sys::fd::read_text("/etc/passwd").unwrap_or_default();
    let name = user_name(&passwd, uid);
    let ranges = |file: &str, own: u32| {
        let text = crate::sys::fd::read_text(file).unwrap_or_default();
        sub_ids(&text, name.as_deref(), own)
    };
    let maps = linux.uid_mappings().as_deref().unwrap_or_default();
    let uid_tool = check_maps("uid", maps, uid, || ranges("/etc/subuid", uid))?
        .then(|| find_tool("newuidmap"))
        .transpose()?;
    let maps = linux.gid_mappings().as_deref().unwrap_or_default();
    let gid_tool = check_maps("gid", maps, gid, || ranges("/etc/subgid", gid))?
        .then(|| find_tool("newgidmap"))
        .transpose()?;
    Ok(MapTools {
        uid: uid_tool,
        gid: gid_tool,
    })
}

/// The name of user `uid` in /etc/passwd text. Read from the file, as runc
/// does, not through NSS: the binary is static (docs/performance.md), and
/// a user only a directory service knows can name its ranges by uid.
pub fn user_name(passwd: &str, uid: u32) -> Option<String> {
    let uid = uid.to_string();
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid).then(|| name.to_string())
    })
}

/// A user's subordinate id ranges `(start, count)` from /etc/subuid or
/// /etc/subgid text: lines `name:start:count` naming the user or its id.
pub fn sub_ids(text: &str, name: Option<&str>, id: u32) -> Vec<(u32, u32)> {
    let own = id.to_string();
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().splitn(3, ':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            if who != own && Some(who) != name {
                return None;
            }
            Some((start.trim().parse().ok()?, count.trim().parse().ok()?))
        })
        .collect()
}

/// Checks one kind's mappings; true when they need the setuid helper (some
/// id other than our own, each mapping inside one of `ranges()`).
fn check_maps(
    kind: &str,
    maps: &[LinuxIdMapping],
    own: u32,
    ranges: impl FnOnce() -> Vec<(u32, u32)>,
) -> Result<bool> {
    let sub = if kind == "uid" {
        "/etc/subuid"
    } else {
        "/etc/subgid"
    };
    match maps {
        [] => Err(Error::Spec(format!(
            "rootless container requires linux.{kind}Mappings (your own {kind} {own}, or ranges from {sub})"
        ))),
        [m] if m.host_id() == own && m.size() == 1 => Ok(false),
        _ => {
            let ranges = ranges();
            let inside = |m: &LinuxIdMapping| {
                let end = u64::from(m.host_id()) + u64::from(m.size());
                (m.host_id() == own && m.size() == 1)
                    || ranges
                        .iter()
                        .any(|&(s, c)| m.host_id() >= s && end <= u64::from(s) + u64::from(c))
            };
            if let Some(outside) = maps.iter().find(|m| !inside(m)) {
                let yours: Vec<String> = ranges
                    .iter()
                    .map(|(s, c)| format!("{s}-{}", u64::from(*s) + u64::from(*c) - 1))
                    .collect();
                let yours = if yours.is_empty() {
                    format!("you have none in {sub}")
                } else {
                    format!("yours in {sub}: {}", yours.join(", "))
                };
                return Err(Error::Spec(format!(
                    "linux.{kind}Mappings: {{containerID {}, hostID {}, size {}}} maps host {kind}s that are not yours: without privilege only your own {kind} {own} and your subordinate ranges can be mapped ({yours})",
                    outside.container_id(),
                    outside.host_id(),
                    outside.size()
                )));
            }
            Ok(true)
        }
    }
}

/// The helper `name` on PATH (else /usr/bin), or an error naming its package.
fn find_tool(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Spec(format!(
                "mapping ids other than your own needs {name} (Debian package uidmap): not found in PATH"
            ))
        })
}

/// Runs `tool PID inside outside count...` (newuidmap/newgidmap).
pub fn run_tool(tool: &std::path::Path, pid: i32, maps: &[LinuxIdMapping]) -> Result<()> {
    let mut args = vec![pid.to_string()];
    for m in maps {
        args.extend([m.container_id(), m.host_id(), m.size()].map(|v| v.to_string()));
    }
    let shown = format!("{} {}", tool.display(), args.join(" "));
    let out = std::process::Command::new(tool)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .ctx(Error::Process, || format!("run {shown}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let err = err.trim().lines().last().unwrap_or("").trim().to_string();
    Err(Error::Process(format!("{shown}: {} ({})", err, out.status)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_come_from_passwd_lines() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\nrtuser:x:1001:1001::/home/rtuser:/bin/sh\nbroken\n";
        assert_eq!(user_name(passwd, 1001).as_deref(), Some("rtuser"));
        assert_eq!(user_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_name(passwd, 1), None);
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode(None).unwrap(), None);
        assert_eq!(parse_mode(Some("auto")).unwrap(), None);
        assert_eq!(parse_mode(Some("true")).unwrap(), Some(true));
        assert_eq!(parse_mode(Some("false")).unwrap(), Some(false));
        assert!(parse_mode(Some("maybe")).is_err());
    }

    #[test]
    fn initial_map_is_told_apart() {
        assert!(initial_id_map("         0          0 4294967295\n"));
        assert!(!initial_id_map("0 1001 1\n1 100000 65536\n"));
        assert!(cgroups_rootless(None, true));
        assert!(!cgroups_rootless(Some(false), true));
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
        assert_eq!(
            check_spec(&spec(&own), uid, gid).unwrap(),
            MapTools::default()
        );
        let mut no_userns = crate::spec::default_spec(false).unwrap();
        no_userns.linux_mut().as_mut().unwrap().set_resources(None);
        let e = check_spec(&no_userns, uid, gid).unwrap_err().to_string();
        assert!(e.contains("user namespace"), "{e}");
    }

    fn maps(json: &str) -> Vec<LinuxIdMapping> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn subordinate_ranges_need_the_helper() {
        let ranges = || vec![(100000, 65536)];
        let own = maps(r#"[{"containerID":0,"hostID":1001,"size":1}]"#);
        assert!(!check_maps("uid", &own, 1001, ranges).unwrap());
        let sub = maps(
            r#"[{"containerID":0,"hostID":1001,"size":1},{"containerID":1,"hostID":100000,"size":65536}]"#,
        );
        assert!(check_maps("uid", &sub, 1001, ranges).unwrap());
        let past = maps(r#"[{"containerID":0,"hostID":100000,"size":65537}]"#);
        let e = check_maps("uid", &past, 1001, ranges)
            .unwrap_err()
            .to_string();
        assert!(e.contains("hostID 100000, size 65537"), "{e}");
        assert!(e.contains("yours in /etc/subuid: 100000-165535"), "{e}");
        let other = maps(r#"[{"containerID":0,"hostID":1002,"size":1}]"#);
        let e = check_maps("gid", &other, 1001, Vec::new)
            .unwrap_err()
            .to_string();
        assert!(e.contains("you have none in /etc/subgid"), "{e}");
        let e = check_maps("uid", &[], 1001, ranges)
            .unwrap_err()
            .to_string();
        assert!(e.contains("requires linux.uidMappings"), "{e}");
    }

    #[test]
    fn subid_lines_by_name_or_id() {
        let text = "alice:100000:65536\n1001:300000:10\nbob:200000:65536\n# junk\nbad:line\n";
        assert_eq!(
            sub_ids(text, Some("alice"), 1001),
            vec![(100000, 65536), (300000, 10)]
        );
        assert_eq!(sub_ids(text, None, 7), vec![]);
    }
}
