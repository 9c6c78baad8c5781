//! Mount option words (`ro`, `nosuid`, `rbind`, `rslave`, `size=64m`, ...)
//! to mount(2) flags, propagation flags, filesystem data, recursive
//! attributes (`rro`, `rnosuid`, ... for `mount_setattr(2)`) and the idmap
//! request (`idmap`, `ridmap`). Pure logic.

use nix::mount::MsFlags;

use crate::error::{Error, Result};

#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub flags: MsFlags,
    /// Propagation changes, applied one by one after the mount.
    pub propagation: Vec<MsFlags>,
    /// Options the filesystem itself reads (`mode=755,size=65536k`).
    pub data: String,
    /// `MOUNT_ATTR_*` bits the recursive words set and clear, applied with
    /// one recursive `mount_setattr(2)` after the mount is made.
    pub rec_set: u64,
    pub rec_clear: u64,
    /// The recursive words as given, for error messages.
    pub rec_words: Vec<String>,
    /// `idmap` (false) or `ridmap` (true): the mount gets an idmapping,
    /// applied to its submounts too with `ridmap`.
    pub idmap: Option<bool>,
}

impl Default for Parsed {
    fn default() -> Self {
        Parsed {
            flags: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
            rec_set: 0,
            rec_clear: 0,
            rec_words: Vec::new(),
            idmap: None,
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
    ("nosymfollow", false, NOSYMFOLLOW),
    ("rbind", false, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
    ("relatime", false, MsFlags::MS_RELATIME),
    ("remount", false, MsFlags::MS_REMOUNT),
    ("ro", false, MsFlags::MS_RDONLY),
    ("rw", true, MsFlags::MS_RDONLY),
    ("silent", false, MsFlags::MS_SILENT),
    ("strictatime", false, MsFlags::MS_STRICTATIME),
    ("suid", true, MsFlags::MS_NOSUID),
    ("symfollow", true, NOSYMFOLLOW),
    ("sync", false, MsFlags::MS_SYNCHRONOUS),
];

/// `MS_NOSYMFOLLOW` (Linux 5.10), which nix does not name.
pub const NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);

/// Recursive flag words: (word, clear?, `MOUNT_ATTR_*` bit).
const REC_FLAGS: &[(&str, bool, u64)] = &[
    ("rro", false, libc::MOUNT_ATTR_RDONLY),
    ("rrw", true, libc::MOUNT_ATTR_RDONLY),
    ("rnosuid", false, libc::MOUNT_ATTR_NOSUID),
    ("rsuid", true, libc::MOUNT_ATTR_NOSUID),
    ("rnodev", false, libc::MOUNT_ATTR_NODEV),
    ("rdev", true, libc::MOUNT_ATTR_NODEV),
    ("rnoexec", false, libc::MOUNT_ATTR_NOEXEC),
    ("rexec", true, libc::MOUNT_ATTR_NOEXEC),
    ("rnodiratime", false, libc::MOUNT_ATTR_NODIRATIME),
    ("rdiratime", true, libc::MOUNT_ATTR_NODIRATIME),
    ("rnosymfollow", false, libc::MOUNT_ATTR_NOSYMFOLLOW),
    ("rsymfollow", true, libc::MOUNT_ATTR_NOSYMFOLLOW),
];

/// Recursive access-time words: (word, the access-time mode they select).
/// The modes are one field of the mount (relatime, noatime or
/// strictatime), so every word picks one: `ratime` and `rnostrictatime`
/// mean the kernel's default (relatime), `rnorelatime` means an update on
/// every access (strictatime).
const REC_ATIME: &[(&str, u64)] = &[
    ("rnoatime", libc::MOUNT_ATTR_NOATIME),
    ("ratime", libc::MOUNT_ATTR_RELATIME),
    ("rrelatime", libc::MOUNT_ATTR_RELATIME),
    ("rnorelatime", libc::MOUNT_ATTR_STRICTATIME),
    ("rstrictatime", libc::MOUNT_ATTR_STRICTATIME),
    ("rnostrictatime", libc::MOUNT_ATTR_RELATIME),
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
    let mut v: Vec<&str> = FLAGS.iter().map(|(word, _, _)| *word).collect();
    v.extend(REC_FLAGS.iter().map(|(word, _, _)| *word));
    v.extend(REC_ATIME.iter().map(|(word, _)| *word));
    v.extend([
        "idmap",
        "ridmap",
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
        if let Some((_, clear, f)) = FLAGS.iter().find(|(word, _, _)| *word == o) {
            if *clear {
                p.flags.remove(*f);
            } else {
                p.flags.insert(*f);
            }
        } else if let Some(f) = propagation(o) {
            p.propagation.push(f);
        } else if let Some((_, clear, f)) = REC_FLAGS.iter().find(|(word, _, _)| *word == o) {
            if *clear {
                p.rec_clear |= f;
                p.rec_set &= !f;
            } else {
                p.rec_set |= f;
                p.rec_clear &= !f;
            }
            p.rec_words.push(o.to_string());
        } else if let Some((_, mode)) = REC_ATIME.iter().find(|(word, _)| *word == o) {
            // Changing the access-time mode means clearing the whole field.
            p.rec_clear |= libc::MOUNT_ATTR__ATIME;
            p.rec_set = (p.rec_set & !libc::MOUNT_ATTR__ATIME) | mode;
            p.rec_words.push(o.to_string());
        } else if o == "idmap" || o == "ridmap" {
            p.idmap = Some(o == "ridmap");
        } else if o.starts_with("idmap=") || o.starts_with("ridmap=") {
            return Err(Error::Spec(format!(
                "mount option {o:?}: mappings in the option are not supported, \
                 give the mount uidMappings and gidMappings"
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
    fn recursive_flags_set_and_clear_attributes() {
        let p = parse(&v(&["rbind", "rro", "rnosuid", "rdev", "rnosymfollow"])).unwrap();
        assert_eq!(
            p.rec_set,
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NOSYMFOLLOW
        );
        assert_eq!(p.rec_clear, libc::MOUNT_ATTR_NODEV);
        assert_eq!(p.rec_words, ["rro", "rnosuid", "rdev", "rnosymfollow"]);
        // Nothing recursive reaches mount(2) or the filesystem.
        assert_eq!(p.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert!(p.data.is_empty());
        // A later word wins over an earlier opposite one.
        let p = parse(&v(&["rro", "rrw", "rnoexec", "rexec"])).unwrap();
        assert_eq!(p.rec_set, 0);
        assert_eq!(
            p.rec_clear,
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOEXEC
        );
    }

    #[test]
    fn recursive_atime_words_pick_one_mode() {
        let atime = |words: &[&str]| {
            let p = parse(&v(words)).unwrap();
            assert_eq!(
                p.rec_clear & libc::MOUNT_ATTR__ATIME,
                libc::MOUNT_ATTR__ATIME
            );
            p.rec_set & libc::MOUNT_ATTR__ATIME
        };
        assert_eq!(atime(&["rnoatime"]), libc::MOUNT_ATTR_NOATIME);
        assert_eq!(atime(&["rstrictatime"]), libc::MOUNT_ATTR_STRICTATIME);
        assert_eq!(atime(&["rrelatime"]), libc::MOUNT_ATTR_RELATIME);
        assert_eq!(atime(&["rnoatime", "ratime"]), libc::MOUNT_ATTR_RELATIME);
        assert_eq!(atime(&["rnorelatime"]), libc::MOUNT_ATTR_STRICTATIME);
        assert_eq!(
            atime(&["rstrictatime", "rnostrictatime"]),
            libc::MOUNT_ATTR_RELATIME
        );
        assert_eq!(
            atime(&["rnoatime", "rstrictatime"]),
            libc::MOUNT_ATTR_STRICTATIME
        );
        // nodiratime is its own bit, outside the access-time field.
        let p = parse(&v(&["rnoatime", "rnodiratime"])).unwrap();
        assert_eq!(
            p.rec_set,
            libc::MOUNT_ATTR_NOATIME | libc::MOUNT_ATTR_NODIRATIME
        );
        let p = parse(&v(&["rdiratime"])).unwrap();
        assert_eq!((p.rec_set, p.rec_clear), (0, libc::MOUNT_ATTR_NODIRATIME));
    }

    #[test]
    fn nosymfollow_is_a_mount_flag() {
        let p = parse(&v(&["bind", "nosymfollow"])).unwrap();
        assert_eq!(p.flags, MsFlags::MS_BIND | NOSYMFOLLOW);
        assert!(p.data.is_empty());
        let p = parse(&v(&["nosymfollow", "symfollow"])).unwrap();
        assert!(p.flags.is_empty());
    }

    #[test]
    fn idmap_words() {
        assert_eq!(parse(&v(&["bind", "idmap"])).unwrap().idmap, Some(false));
        assert_eq!(parse(&v(&["rbind", "ridmap"])).unwrap().idmap, Some(true));
        assert_eq!(parse(&v(&["rbind"])).unwrap().idmap, None);
        let e = parse(&v(&["idmap=uids=0-1000-1"])).unwrap_err().to_string();
        assert!(e.contains("\"idmap=uids=0-1000-1\""), "{e}");
    }

    #[test]
    fn every_word_is_listed_once() {
        let words = known_words();
        let mut sorted = words.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), words.len());
        for word in &words {
            let p = parse(&v(&[word])).unwrap();
            assert!(p.data.is_empty(), "{word} went to the filesystem data");
        }
    }
}
