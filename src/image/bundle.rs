//! config.json from an image config, following the image spec's conversion
//! rules (as `umoci unpack` and `oci-image-tool create` do). See docs/image.md.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::Spec;
use pathrs::Root;

use crate::error::{Error, Result};

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process user of an image's `User` field.
#[derive(Debug, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
}

struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<Passwd> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 4).then(|| {
                Some(Passwd {
                    name: f[0].into(),
                    uid: f[2].parse().ok()?,
                    gid: f[3].parse().ok()?,
                })
            })?
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 3).then(|| {
                Some(Group {
                    name: f[0].into(),
                    gid: f[2].parse().ok()?,
                    members: f
                        .get(3)
                        .map(|m| {
                            m.split(',')
                                .filter(|s| !s.is_empty())
                                .map(String::from)
                                .collect()
                        })
                        .unwrap_or_default(),
                })
            })?
        })
        .collect()
}

/// Resolves `user[:group]` (names or ids) against the rootfs's passwd and
/// group files. Pure: the files' texts are passed in.
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<ResolvedUser> {
    let users = parse_passwd(passwd);
    let groups = parse_group(group);
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = if let Ok(uid) = u.parse::<u32>() {
        users.iter().find(|p| p.uid == uid)
    } else {
        Some(users.iter().find(|p| p.name == u).ok_or_else(|| {
            Error::Image(format!(
                "image user {u:?} is not in the rootfs's /etc/passwd"
            ))
        })?)
    };
    let uid = u
        .parse::<u32>()
        .ok()
        .or(entry.map(|p| p.uid))
        .expect("uid from number or passwd");
    match g {
        Some(g) => {
            let gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => groups
                    .iter()
                    .find(|x| x.name == g)
                    .map(|x| x.gid)
                    .ok_or_else(|| {
                        Error::Image(format!(
                            "image group {g:?} is not in the rootfs's /etc/group"
                        ))
                    })?,
            };
            // A group given explicitly: supplementary groups are not applied.
            Ok(ResolvedUser {
                uid,
                gid,
                additional_gids: Vec::new(),
            })
        }
        None => {
            let gid = entry.map_or(0, |p| p.gid);
            let mut additional: Vec<u32> = match entry {
                Some(p) => groups
                    .iter()
                    .filter(|x| x.members.contains(&p.name) && x.gid != gid)
                    .map(|x| x.gid)
                    .collect(),
                None => Vec::new(),
            };
            additional.sort_unstable();
            additional.dedup();
            Ok(ResolvedUser {
                uid,
                gid,
                additional_gids: additional,
            })
        }
    }
}

/// Reads a small file of the rootfs, resolved inside it (a symlinked
/// /etc/passwd cannot make us read the host's).
fn read_in_root(root: &Root, path: &str) -> String {
    let Ok(h) = root.resolve(path) else {
        return String::new();
    };
    let Ok(mut f) = h.reopen(pathrs::flags::OpenFlags::O_RDONLY) else {
        return String::new();
    };
    let mut s = String::new();
    let _ = f.by_ref().take(4 << 20).read_to_string(&mut s);
    s
}

/// Builds config.json for the unpacked image. A `rootless` one starts from
/// `ocirun spec --rootless` (a user namespace mapping only the caller's
/// uid and gid, to 0) and runs the process as 0:0, the only ids there; the
/// second value then says which image user that replaced, if any.
pub fn config_for(
    image: &ImageConfiguration,
    root: &Root,
    manifest_annotations: Option<&HashMap<String, String>>,
    rootless: bool,
) -> Result<(Spec, Option<String>)> {
    let mut spec = crate::spec::default_spec(rootless)?;
    let cfg = image.config().clone().unwrap_or_default();
    let mut annotations: HashMap<String, String> = HashMap::new();
    let mut put = |k: &str, v: String| {
        if !v.is_empty() {
            annotations.insert(k.to_string(), v);
        }
    };
    put("org.opencontainers.image.os", image.os().to_string());
    put(
        "org.opencontainers.image.architecture",
        image.architecture().to_string(),
    );
    if let Some(v) = image.variant() {
        put("org.opencontainers.image.variant", v.clone());
    }
    if let Some(v) = image.os_version() {
        put("org.opencontainers.image.os.version", v.clone());
    }
    if let Some(v) = image.os_features() {
        put("org.opencontainers.image.os.features", v.join(","));
    }
    if let Some(v) = image.author() {
        put("org.opencontainers.image.author", v.clone());
    }
    if let Some(v) = image.created() {
        put("org.opencontainers.image.created", v.clone());
    }
    if let Some(v) = cfg.stop_signal() {
        put("org.opencontainers.image.stopSignal", v.clone());
    }
    if let Some(ports) = cfg.exposed_ports() {
        let mut p: Vec<String> = ports.clone();
        p.sort();
        put("org.opencontainers.image.exposedPorts", p.join(","));
    }
    if let Some(vols) = cfg.volumes() {
        let mut v: Vec<String> = vols.clone();
        v.sort();
        put("org.opencontainers.image.volumes", v.join(","));
    }
    for (k, v) in manifest_annotations.into_iter().flatten() {
        annotations.insert(k.clone(), v.clone());
    }
    for (k, v) in cfg.labels().iter().flatten() {
        annotations.insert(k.clone(), v.clone());
    }

    let mut args: Vec<String> = cfg.entrypoint().clone().unwrap_or_default();
    args.extend(cfg.cmd().clone().unwrap_or_default());
    let mut env: Vec<String> = cfg.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let cwd = cfg
        .working_dir()
        .clone()
        .filter(|word| !word.is_empty())
        .unwrap_or_else(|| "/".into());
    let root_user = ResolvedUser {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
    };
    let mut note = None;
    let user = match cfg.user().as_deref().filter(|u| !u.is_empty()) {
        Some(u) => {
            let user = resolve_user(
                u,
                &read_in_root(root, "/etc/passwd"),
                &read_in_root(root, "/etc/group"),
            )?;
            if !rootless {
                user
            } else {
                // Supplementary groups go too: no other gid is mapped.
                if (user.uid, user.gid) != (0, 0) {
                    note = Some(format!(
                        "image user {u:?} ({}:{}) runs as 0:0: a rootless bundle maps only your own uid and gid, to 0",
                        user.uid, user.gid
                    ));
                }
                root_user
            }
        }
        None => root_user,
    };

    let process = spec
        .process_mut()
        .as_mut()
        .expect("default spec has a process");
    process.set_terminal(Some(false));
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(cwd));
    let u = process.user_mut();
    u.set_uid(user.uid);
    u.set_gid(user.gid);
    u.set_additional_gids((!user.additional_gids.is_empty()).then_some(user.additional_gids));
    spec.set_annotations(Some(annotations));
    Ok((spec, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nweb:x:33:33::/var/www:/bin/false\nalice:x:1000:1000::/home/alice:/bin/sh\n";
    pub(super) const GROUP: &str =
        "root:x:0:\nwww:x:33:\nalice:x:1000:\nwheel:x:10:alice,bob\naudio:x:29:alice\n";

    #[test]
    fn user_forms() {
        let r = |s| resolve_user(s, PASSWD, GROUP);
        assert_eq!(
            r("alice").unwrap(),
            ResolvedUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![10, 29]
            }
        );
        assert_eq!(
            r("1000").unwrap(),
            ResolvedUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![10, 29]
            }
        );
        assert_eq!(
            r("alice:www").unwrap(),
            ResolvedUser {
                uid: 1000,
                gid: 33,
                additional_gids: vec![]
            }
        );
        assert_eq!(
            r("1000:33").unwrap(),
            ResolvedUser {
                uid: 1000,
                gid: 33,
                additional_gids: vec![]
            }
        );
        assert_eq!(
            r("web:10").unwrap(),
            ResolvedUser {
                uid: 33,
                gid: 10,
                additional_gids: vec![]
            }
        );
        // A uid not in passwd: gid 0, no groups (image spec).
        assert_eq!(
            r("4242").unwrap(),
            ResolvedUser {
                uid: 4242,
                gid: 0,
                additional_gids: vec![]
            }
        );
        assert!(r("nobody").unwrap_err().to_string().contains("nobody"));
        assert!(
            r("alice:nogroup")
                .unwrap_err()
                .to_string()
                .contains("nogroup")
        );
    }
}

#[cfg(test)]
mod rootless_tests {
    use super::*;
    use oci_spec::runtime::LinuxNamespaceType;

    fn config(user: &str, rootless: bool) -> (Spec, Option<String>) {
        let d = std::env::temp_dir().join(format!(
            "ocirun-bundle-{}-{rootless}-{}",
            std::process::id(),
            user.len()
        ));
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::write(d.join("etc/passwd"), super::tests::PASSWD).unwrap();
        std::fs::write(d.join("etc/group"), super::tests::GROUP).unwrap();
        let image: ImageConfiguration = serde_json::from_value(serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": {"User": user},
            "rootfs": {"type": "layers", "diff_ids": []}
        }))
        .unwrap();
        let out = config_for(&image, &Root::open(&d).unwrap(), None, rootless).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
        out
    }

    #[test]
    fn rootless_config_maps_the_caller_to_root() {
        let (spec, note) = config("alice", true);
        let u = spec.process().as_ref().unwrap().user();
        assert_eq!((u.uid(), u.gid(), u.additional_gids()), (0, 0, &None));
        let note = note.unwrap();
        assert!(note.contains("\"alice\" (1000:1000)"), "{note}");
        let linux = spec.linux().as_ref().unwrap();
        let ns: Vec<_> = linux
            .namespaces()
            .iter()
            .flatten()
            .map(|n| n.typ())
            .collect();
        assert!(ns.contains(&LinuxNamespaceType::User), "{ns:?}");
        assert!(!ns.contains(&LinuxNamespaceType::Network), "{ns:?}");
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        crate::rootless::check_spec(&spec, uid, gid).unwrap();
        // Root's image, or no User: nothing to say.
        assert_eq!(config("root", true).1, None);
        assert_eq!(config("", true).1, None);
        // With privilege the image user stays.
        let (spec, note) = config("alice", false);
        assert_eq!(spec.process().as_ref().unwrap().user().uid(), 1000);
        assert_eq!(note, None);
    }
}
