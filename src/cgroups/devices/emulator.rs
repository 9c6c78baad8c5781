//! The emulator of the cgroup v1 device controller (see the module doc of
//! `devices`): a default and exceptions, a rule list run through it, the
//! state read from `devices.list`, and the fewest rules from one state to
//! another.

use std::collections::BTreeMap;

use oci_spec::runtime::LinuxDeviceCgroup;

use super::{Kind, MKNOD, READ, RWM, Rule, WRITE, access_text, describe};

/// Key of an exception: type (never `All`), major, minor.
type Meta = (Kind, Option<u32>, Option<u32>);

/// The state of a cgroup v1 device controller: a default and exceptions
/// to it with their access bits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Emulator {
    pub(super) default_allow: bool,
    pub(super) exceptions: BTreeMap<Meta, u8>,
}

impl Emulator {
    fn apply(&mut self, r: &Rule) -> std::result::Result<(), String> {
        if r.kind == Kind::All {
            // The kernel treats any `a` line as a switch of the whole cgroup.
            *self = Emulator {
                default_allow: r.allow,
                exceptions: BTreeMap::new(),
            };
            return Ok(());
        }
        let meta = (r.kind, r.major, r.minor);
        if r.allow != self.default_allow {
            *self.exceptions.entry(meta).or_insert(0) |= r.access;
            return Ok(());
        }
        // Taking access away: the kernel only edits the exception with
        // exactly this type/major/minor and silently keeps what a wildcard
        // exception grants; refuse rather than pretend.
        let (k, major, minor) = meta;
        for wide in [(k, None, minor), (k, major, None), (k, None, None)] {
            if wide == meta {
                continue;
            }
            if let Some(&bits) = self.exceptions.get(&wide)
                && bits & r.access != 0
            {
                let wildcard = Rule {
                    allow: !self.default_allow,
                    kind: k,
                    major: wide.1,
                    minor: wide.2,
                    access: bits,
                };
                return Err(format!(
                    "cannot take {:?} away from part of the earlier wildcard rule {} {wildcard}; the device cgroup cannot punch holes in wildcards",
                    access_text(r.access & bits),
                    if wildcard.allow { "allow" } else { "deny" },
                ));
            }
        }
        if let Some(bits) = self.exceptions.get_mut(&meta) {
            *bits &= !r.access;
            if *bits == 0 {
                self.exceptions.remove(&meta);
            }
        }
        Ok(())
    }

    /// From a cgroup v1 `devices.list` (an allow list; `a *:* rwm` means
    /// allow-all, whose deny exceptions the file does not show).
    pub(super) fn from_list(text: &str) -> std::result::Result<Emulator, String> {
        let mut e = Emulator::default();
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let unexpected = || format!("unexpected devices.list line {line:?}");
            let f: Vec<&str> = line.split([' ', ':']).collect();
            let [t, maj, min, acc] = f[..] else {
                return Err(unexpected());
            };
            let kind = match t {
                "a" => Kind::All,
                "b" => Kind::Block,
                "c" => Kind::Char,
                _ => return Err(unexpected()),
            };
            let num = |s: &str| -> std::result::Result<Option<u32>, String> {
                if s == "*" {
                    Ok(None)
                } else {
                    s.parse().map(Some).map_err(|_| unexpected())
                }
            };
            let mut access = 0;
            for c in acc.chars() {
                access |= match c {
                    'r' => READ,
                    'w' => WRITE,
                    'm' => MKNOD,
                    _ => return Err(unexpected()),
                };
            }
            e.apply(&Rule {
                allow: true,
                kind,
                major: num(maj)?,
                minor: num(min)?,
                access,
            })?;
        }
        Ok(e)
    }

    /// The fewest rules that take a cgroup in state `self` to `target`. A
    /// switch of the default comes first when needed, and always when
    /// `self` is allow-all (its deny exceptions are unknown).
    pub(super) fn transition(&self, target: &Emulator) -> Vec<Rule> {
        let mut out = Vec::new();
        let none = BTreeMap::new();
        let mut old = &self.exceptions;
        if self.default_allow || self.default_allow != target.default_allow {
            out.push(Rule {
                allow: target.default_allow,
                kind: Kind::All,
                major: None,
                minor: None,
                access: RWM,
            });
            old = &none;
        }
        let rule = |(k, major, minor): Meta, allow, access| Rule {
            allow,
            kind: k,
            major,
            minor,
            access,
        };
        for (&meta, &bits) in old {
            let dropped = bits & !target.exceptions.get(&meta).copied().unwrap_or(0);
            if dropped != 0 {
                out.push(rule(meta, target.default_allow, dropped));
            }
        }
        for (&meta, &bits) in &target.exceptions {
            let gained = bits & !old.get(&meta).copied().unwrap_or(0);
            if gained != 0 {
                out.push(rule(meta, !target.default_allow, gained));
            }
        }
        out
    }

    /// The state as a rule list for [`program`](super::ebpf::program): the
    /// default (as an `a` rule when it is allow) and the exceptions, all the
    /// other way.
    pub(super) fn clean_rules(&self) -> Vec<Rule> {
        let mut out = Vec::new();
        if self.default_allow {
            out.push(Rule {
                allow: true,
                kind: Kind::All,
                major: None,
                minor: None,
                access: RWM,
            });
        }
        for (&(kind, major, minor), &access) in &self.exceptions {
            out.push(Rule {
                allow: !self.default_allow,
                kind,
                major,
                minor,
                access,
            });
        }
        out
    }
}

/// Checks the rules and runs them through the emulator, starting deny-all.
/// Errors name the rule by index and as written.
pub(super) fn emulate(rules: &[LinuxDeviceCgroup]) -> std::result::Result<Emulator, String> {
    let mut e = Emulator::default();
    for (i, r) in rules.iter().enumerate() {
        Rule::from_spec(r)
            .and_then(|rule| e.apply(&rule))
            .map_err(|why| format!("device rule {i} ({}): {why}", describe(r)))?;
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::super::tests::sr;
    use super::*;

    #[test]
    fn emulator_follows_the_v1_kernel() {
        let em = |rules: &[&str]| emulate(&rules.iter().map(|r| sr(r)).collect::<Vec<_>>());
        // Exceptions merge and shrink by exact match only.
        let e = em(&[
            "allow c 1:3 rw",
            "allow c 1:3 m",
            "deny c 1:3 w",
            "deny c 1:* r",
        ])
        .unwrap();
        assert_eq!(e.exceptions[&(Kind::Char, Some(1), Some(3))], READ | MKNOD);
        // An `a` rule resets whatever its access says.
        let e = em(&["allow c 1:3 rw", "allow a *:* r"]).unwrap();
        assert!(e.default_allow && e.exceptions.is_empty());
        let e = em(&["allow a *:* rwm", "deny b 8:* rwm", "allow b 8:* r"]).unwrap();
        assert_eq!(e.exceptions[&(Kind::Block, Some(8), None)], WRITE | MKNOD);
        assert!(em(&["allow a *:* rwm", "deny b 8:* w", "allow b 8:1 w"]).is_err());
    }

    #[test]
    fn transitions_write_only_the_difference() {
        let list = Emulator::from_list("c 1:3 rwm\nc 1:5 rw\nb *:* m\n").unwrap();
        let target = emulate(&[
            sr("allow c 1:3 rwm"),
            sr("allow c 1:5 r"),
            sr("allow c 4:1 w"),
        ])
        .unwrap();
        let t: Vec<String> = list
            .transition(&target)
            .iter()
            .map(|r| format!("{} {r}", r.allow))
            .collect();
        assert_eq!(t, ["false b *:* m", "false c 1:5 w", "true c 4:1 w"]);
        // From allow-all (a fresh v1 cgroup): deny everything first.
        let all = Emulator::from_list("a *:* rwm\n").unwrap();
        let t = all.transition(&target);
        assert_eq!(t[0].to_string(), "a *:* rwm");
        assert!(!t[0].allow);
        assert_eq!(t.len(), 4);
        // Applying the transition to the source gives the target.
        let mut e = list.clone();
        for r in list.transition(&target) {
            e.apply(&r).unwrap();
        }
        assert_eq!(e, target);
    }
}
