//! Mount option words (`ro`, `nosuid`, `rbind`, `rslave`, `size=64m`, ...)
//! to mount(2) flags, propagation flags and filesystem data. Pure logic.

use nix::mount::MsFlags;

use crate::error::{Error, Result};

#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub flags: MsFlags,
    /// Propagation changes, applied one by one after the mount.
    pub propagation: Vec<MsFlags>,
    /// Options the filesystem itself reads (`mode=755,size=65536k`).
    pub data: String,
}

impl Default for Parsed {
    fn default() -> Self {
        Parsed {
            flags: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
        }
    }
}

impl Parsed {
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }
}

/// Flag words: (word, clear?, flag).
const FLAGS: &[(&str, bool, MsFlags)] = &[
    ("acl", false, MsFlags::MS_POSIXACL),
    ("async", true, MsFlags::MS_SYNCHRONOUS),
    ("atime", true, MsFlags::MS_NOATIME),
    ("bind", false, MsFlags::MS_BIND),
    ("defaults", false, MsFlags::empty()),
    ("dev", true, MsFlags::MS_NODEV),
    ("diratime", true, MsFlags::MS_NODIRATIME),
    ("dirsync", false, MsFlags::MS_DIRSYNC),
    ("exec", true, MsFlags::MS_NOEXEC),
    ("iversion", false, MsFlags::MS_I_VERSION),
    ("lazytime", false, MsFlags::MS_LAZYTIME),
    ("loud", true, MsFlags::MS_SILENT),
    ("mand", false, MsFlags::MS_MANDLOCK),
    ("noacl", true, MsFlags::MS_POSIXACL),
    ("noatime", false, MsFlags::MS_NOATIME),
    ("nodev", false, MsFlags::MS_NODEV),
    ("nodiratime", false, MsFlags::MS_NODIRATIME),
    ("noexec", false, MsFlags::MS_NOEXEC),
    ("noiversion", true, MsFlags::MS_I_VERSION),
    ("nolazytime", true, MsFlags::MS_LAZYTIME),
    ("nomand", true, MsFlags::MS_MANDLOCK),
    ("norelatime", true, MsFlags::MS_RELATIME),
    ("nostrictatime", true, MsFlags::MS_STRICTATIME),
    ("nosuid", false, MsFlags::MS_NOSUID),
    ("rbind", false, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
    ("relatime", false, MsFlags::MS_RELATIME),
    ("remount", false, MsFlags::MS_REMOUNT),
    ("ro", false, MsFlags::MS_RDONLY),
    ("rw", true, MsFlags::MS_RDONLY),
    ("silent", false, MsFlags::MS_SILENT),
    ("strictatime", false, MsFlags::MS_STRICTATIME),
    ("suid", true, MsFlags::MS_NOSUID),
    ("sync", false, MsFlags::MS_SYNCHRONOUS),
];

/// Propagation words, also valid for `rootfsPropagation`.
pub fn propagation(word: &str) -> Option<MsFlags> {
    Some(match word {
        "private" => MsFlags::MS_PRIVATE,
        "shared" => MsFlags::MS_SHARED,
        "slave" => MsFlags::MS_SLAVE,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Every option word this parser understands, for `ocirun features`.
pub fn known_words() -> Vec<&'static str> {
    let mut v: Vec<&str> = FLAGS.iter().map(|(w, _, _)| *w).collect();
    v.extend([
        "private",
        "shared",
        "slave",
        "unbindable",
        "rprivate",
        "rshared",
        "rslave",
        "runbindable",
        "tmpcopyup",
    ]);
    v.sort_unstable();
    v
}

pub fn parse(options: &[String]) -> Result<Parsed> {
    let mut p = Parsed::default();
    let mut data: Vec<&str> = Vec::new();
    for o in options {
        let o = o.as_str();
        if let Some((_, clear, f)) = FLAGS.iter().find(|(w, _, _)| *w == o) {
            if *clear {
                p.flags.remove(*f);
            } else {
                p.flags.insert(*f);
            }
        } else if let Some(f) = propagation(o) {
            p.propagation.push(f);
        } else if matches!(
            o,
            "idmap"
                | "ridmap"
                | "rro"
                | "rrw"
                | "rnosuid"
                | "rsuid"
                | "rnodev"
                | "rdev"
                | "rnoexec"
                | "rexec"
                | "rnoatime"
                | "ratime"
                | "rrelatime"
                | "rnorelatime"
                | "rstrictatime"
                | "rnostrictatime"
                | "rnodiratime"
                | "rdiratime"
        ) {
            return Err(Error::Spec(format!(
                "mount option {o:?} is not supported by this version of ocirun"
            )));
        } else if o == "tmpcopyup" {
            // Podman's hint to copy the image's files into a new tmpfs; runc
            // ignores it outside its own copy-up support. Nothing to pass on.
        } else {
            data.push(o);
        }
    }
    p.data = data.join(",");
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: &[&str]) -> Vec<String> {
        x.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn runc_default_dev_pts() {
        let p = parse(&v(&[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]))
        .unwrap();
        assert_eq!(p.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
        assert_eq!(p.data, "newinstance,ptmxmode=0666,mode=0620,gid=5");
    }

    #[test]
    fn rbind_ro_and_propagation() {
        let p = parse(&v(&["rbind", "ro", "rprivate", "nodev"])).unwrap();
        assert!(p.is_bind());
        assert!(
            p.flags
                .contains(MsFlags::MS_REC | MsFlags::MS_RDONLY | MsFlags::MS_NODEV)
        );
        assert_eq!(p.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert!(p.data.is_empty());
    }

    #[test]
    fn later_words_override_earlier() {
        let p = parse(&v(&["ro", "rw", "nosuid", "suid"])).unwrap();
        assert!(p.flags.is_empty());
    }

    #[test]
    fn unsupported_recursive_attrs_are_refused() {
        assert!(parse(&v(&["rro"])).is_err());
        assert!(parse(&v(&["idmap"])).is_err());
    }
}
