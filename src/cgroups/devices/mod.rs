//! The device cgroup: which device nodes a container may open for reading or
//! writing, and create with mknod.
//!
//! The rules (`linux.resources.devices`, with runc's defaults appended, see
//! [`effective_rules`]) are first run through an emulator of the cgroup v1
//! device controller, as runc 1.1 does on both versions: it starts as
//! deny-all; a rule of type `a` switches the whole cgroup to allow-all or
//! deny-all and forgets every exception; any other rule that agrees with the
//! current default removes access bits from the exception with exactly its
//! type, major and minor, and one that disagrees adds bits to it. Taking bits
//! away that a wildcard exception still grants (`allow c *:* rwm` then `deny
//! c 1:3 w`) is refused, because the kernel would silently ignore it.
//!
//! The result is a default and a set of exceptions, all with the opposite
//! action, so their order does not matter. On cgroup v1 (`v1.rs`) the
//! cgroup's current `devices.list` is read the same way and only the
//! difference is written to `devices.deny` / `devices.allow` (a switch of
//! the default first if needed), so an update never opens a window in which
//! a device the container uses is denied. On cgroup v2 ([`apply_v2`]) the
//! exceptions become an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE`.
//!
//! Here: the rules, their checks, runc's defaults, systemd's form of them
//! and the choice of hierarchy; the emulator in `emulator.rs`, the v1 writer
//! in `v1.rs`, the v2 attach in `v2.rs`, the eBPF assembler in `ebpf.rs`.

use std::fmt;
use std::path::Path;

use oci_spec::runtime::{Linux, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::Hierarchy;
use crate::error::{Error, Result};

mod ebpf;
mod emulator;
mod v1;
mod v2;

use emulator::emulate;
use v1::apply_v1;
pub use v2::apply_v2;

/// Access bits, with the values of the kernel's `BPF_DEVCG_ACC_*`.
pub const MKNOD: u8 = 1;
pub const READ: u8 = 2;
pub const WRITE: u8 = 4;
const RWM: u8 = READ | WRITE | MKNOD;

/// The device type of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `a`: every device.
    All,
    /// `b`
    Block,
    /// `c`
    Char,
}

/// A checked device rule: `None` for a wildcard major or minor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub kind: Kind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// [`READ`] | [`WRITE`] | [`MKNOD`]
    pub access: u8,
}

fn access_text(bits: u8) -> String {
    [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')]
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// The cgroup v1 form, `c 1:3 rwm` (as written to devices.allow).
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let kind = match self.kind {
            Kind::All => 'a',
            Kind::Block => 'b',
            Kind::Char => 'c',
        };
        write!(
            f,
            "{kind} {}:{} {}",
            num(self.major),
            num(self.minor),
            access_text(self.access)
        )
    }
}

impl Rule {
    /// Checks one spec rule; the error says what is wrong with it.
    pub fn from_spec(r: &LinuxDeviceCgroup) -> std::result::Result<Rule, String> {
        let kind = match r.typ() {
            None | Some(LinuxDeviceType::A) => Kind::All,
            Some(LinuxDeviceType::B) => Kind::Block,
            Some(LinuxDeviceType::C) => Kind::Char,
            Some(t) => return Err(format!("type {:?} is not one of a, b, c", t.as_str())),
        };
        let access = r.access().as_deref().unwrap_or("");
        if access.is_empty() {
            return Err("access is empty (want some of r, w, m)".into());
        }
        let mut bits = 0;
        for c in access.chars() {
            bits |= match c {
                'r' => READ,
                'w' => WRITE,
                'm' => MKNOD,
                _ => return Err(format!("access {access:?} has a letter other than r, w, m")),
            };
        }
        let number = |what: &str, n: Option<i64>| match n {
            None | Some(-1) => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| format!("{what} {n} is not -1 or a number from 0 to {}", u32::MAX)),
        };
        Ok(Rule {
            allow: r.allow(),
            kind,
            major: number("major", r.major())?,
            minor: number("minor", r.minor())?,
            access: bits,
        })
    }
}

/// A spec rule as the user wrote it, for error messages.
fn describe(r: &LinuxDeviceCgroup) -> String {
    let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
    format!(
        "{} {} {}:{} {}",
        if r.allow() { "allow" } else { "deny" },
        r.typ().unwrap_or_default().as_str(),
        num(r.major()),
        num(r.minor()),
        r.access().as_deref().unwrap_or("")
    )
}

/// Checks every rule (type one of a/b/c, access only r/w/m letters and not
/// empty, major/minor >= -1 or None), and that the list can be honoured as a
/// whole (no deny punching a hole in an earlier wildcard allow, or the
/// reverse): a clear error naming the bad rule.
pub fn validate(rules: &[LinuxDeviceCgroup]) -> Result<()> {
    emulate(rules).map(drop).map_err(Error::Spec)
}

/// A rule of runc's `AllowedDevices`: (path, type, major, minor, access),
/// `-1` for a wildcard.
type Allowed = (Option<&'static str>, char, i64, i64, &'static str);

/// runc 1.1's `AllowedDevices`, in its order: mknod of any char and block
/// device, the default devices, then the devices below.
fn runc_defaults() -> impl Iterator<Item = Allowed> {
    const MKNOD: [Allowed; 2] = [(None, 'c', -1, -1, "m"), (None, 'b', -1, -1, "m")];
    const MORE: [Allowed; 3] = [
        (None, 'c', 136, -1, "rwm"), // /dev/pts/*
        (None, 'c', 5, 2, "rwm"),    // /dev/ptmx
        (None, 'c', 10, 200, "rwm"), // /dev/net/tun
    ];
    let defaults = crate::spec::DEFAULT_DEVICES
        .into_iter()
        .map(|(path, major, minor)| (Some(path), 'c', major, minor, "rwm"));
    MKNOD.into_iter().chain(defaults).chain(MORE)
}

/// The rules a container gets, exactly as runc 1.1 builds them
/// (`specconv.CreateCgroupConfig` + `createDevices`):
///
/// - the spec's rules first, in order, then runc's `AllowedDevices` appended
///   after them: mknod of any char and any block device (`c *:* m`,
///   `b *:* m`), `rwm` on /dev/null, random, full, tty, zero, urandom
///   (`c 1:3`, `1:8`, `1:7`, `5:0`, `1:5`, `1:9`), the pty slaves
///   `c 136:*`, /dev/ptmx `c 5:2` and /dev/net/tun `c 10:200`;
/// - a default that has a path is left out when `linux.devices` lists a
///   device at the same path (the spec's device then decides, through the
///   spec's own rules), which is the only way a spec can take one of those
///   defaults away, since appended allows win over earlier denies;
/// - the baseline is deny-all in every case, also when the spec has no
///   device rules at all (runc's emulator starts as a whitelist), so a spec
///   without rules gets exactly the defaults; only an explicit
///   `{"allow": true, "access": "rwm"}` (type `a`) switches to allow-all;
/// - `linux.devices` themselves are not allowed automatically (runc 1.1 no
///   longer does it): a device there needs an allow rule to be usable.
pub fn effective_rules(
    spec_rules: &[LinuxDeviceCgroup],
    spec_devices: &[LinuxDevice],
) -> Vec<LinuxDeviceCgroup> {
    let mut out = spec_rules.to_vec();
    for (path, kind, major, minor, access) in runc_defaults() {
        if path.is_some_and(|p| spec_devices.iter().any(|d| d.path() == Path::new(p))) {
            continue;
        }
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(if kind == 'b' {
            LinuxDeviceType::B
        } else {
            LinuxDeviceType::C
        }));
        r.set_major((major >= 0).then_some(major));
        r.set_minor((minor >= 0).then_some(minor));
        r.set_access(Some(access.to_string()));
        out.push(r);
    }
    out
}

/// `DevicePolicy` and the `DeviceAllow` entries (path, access letters).
pub type SystemdDevices = (&'static str, Vec<(String, String)>);

/// systemd's view of a container's device rules (`linux.resources.devices`
/// with runc's defaults, [`effective_rules`]) for the systemd cgroup
/// driver: `DevicePolicy` and the `DeviceAllow` entries (path or group,
/// access letters), as runc converts them. A specific device is
/// `/dev/{char,block}/MAJOR:MINOR`, a whole major `char-MAJOR`, every device
/// of a type `char-*`; a rule with a wildcard major and a number as minor
/// has no systemd form and is left to ocirun's own device program (systemd
/// stays stricter there). systemd has no deny list: rules that allow by
/// default give `auto` with no entries (allow everything) and the exceptions
/// are enforced by ocirun's program alone.
pub fn systemd_policy(rules: &[LinuxDeviceCgroup]) -> std::result::Result<SystemdDevices, String> {
    let e = emulate(rules)?;
    if e.default_allow {
        return Ok(("auto", Vec::new()));
    }
    let mut allow = Vec::new();
    for (&(kind, major, minor), &bits) in &e.exceptions {
        let t = match kind {
            Kind::Char => "char",
            Kind::Block => "block",
            Kind::All => continue,
        };
        let path = match (major, minor) {
            (None, None) => format!("{t}-*"),
            (None, Some(_)) => continue,
            (Some(ma), None) => format!("{t}-{ma}"),
            (Some(ma), Some(mi)) => format!("/dev/{t}/{ma}:{mi}"),
        };
        allow.push((path, access_text(bits)));
    }
    Ok(("strict", allow))
}

/// Applies the container's device rules (its spec rules plus runc's
/// defaults, [`effective_rules`]) in the hierarchy that controls devices:
/// the v1 `devices` one when there is one (on a hybrid host the unified
/// mount has no device control of its own), else the single cgroup2
/// hierarchy. A host with neither is refused: the device cgroup is what
/// keeps a root container off the host's disks.
pub fn apply_for(hs: &[Hierarchy], linux: &Linux) -> Result<()> {
    let spec_rules = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().as_deref())
        .unwrap_or_default();
    validate(spec_rules)?;
    let devices = linux.devices().as_deref().unwrap_or_default();
    let rules = effective_rules(spec_rules, devices);
    let v1 = hs
        .iter()
        .find(|h| !h.v2 && h.controllers.split(',').any(|c| c == "devices"));
    if let Some(h) = v1 {
        return apply_v1(&h.dir, &rules);
    }
    match hs {
        [h] if h.v2 => apply_v2(&h.dir, &rules),
        _ => Err(Error::Cgroup(
            "no devices cgroup hierarchy is mounted (v1 \"devices\" or a pure cgroup v2 host)"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spec rule from its JSON.
    pub(super) fn spec(json: &str) -> LinuxDeviceCgroup {
        serde_json::from_str(json).unwrap()
    }

    /// `"allow c 1:3 rw"` → a spec rule (`*` for a wildcard).
    pub(super) fn sr(text: &str) -> LinuxDeviceCgroup {
        let f: Vec<&str> = text.split([' ', ':']).collect();
        let num = |s: &str| {
            if s == "*" {
                "null".to_string()
            } else {
                s.to_string()
            }
        };
        spec(&format!(
            r#"{{"allow": {}, "type": "{}", "major": {}, "minor": {}, "access": "{}"}}"#,
            f[0] == "allow",
            f[1],
            num(f[2]),
            num(f[3]),
            f[4]
        ))
    }

    pub(super) fn rule(text: &str) -> Rule {
        Rule::from_spec(&sr(text)).unwrap()
    }

    #[test]
    fn validation_names_the_bad_rule() {
        let e = validate(&[sr("allow c 1:3 rwm"), sr("deny c 1:5 rq")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "device rule 1 (deny c 1:5 rq): access \"rq\" has a letter other than r, w, m"
        );
        // 'x' is not even a device type: the spec parser refuses it.
        let e =
            serde_json::from_str::<LinuxDeviceCgroup>(r#"{"allow":true,"type":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown variant `x`"), "{e}");
        // 'u' and 'p' are device types, but not device cgroup types.
        let e = validate(&[spec(r#"{"allow":true,"type":"u","access":"r"}"#)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "device rule 0 (allow u *:* r): type \"u\" is not one of a, b, c"
        );
        let e =
            validate(&[spec(r#"{"allow":true,"type":"c","major":-2,"access":"r"}"#)]).unwrap_err();
        assert!(e.to_string().contains("major -2 is not -1"), "{e}");
        let e = validate(&[spec(r#"{"allow":false}"#)]).unwrap_err();
        assert!(e.to_string().contains("access is empty"), "{e}");
        // A hole in a wildcard is refused (the kernel would ignore it).
        let e = validate(&[sr("allow c *:* rwm"), sr("deny c 1:3 w")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("device rule 1 (deny c 1:3 w): cannot take \"w\" away"),
            "{e}"
        );
        // Fine: -1 and None are wildcards, type defaults to a.
        validate(&[
            spec(r#"{"allow":false,"access":"rwm"}"#),
            spec(r#"{"allow":true,"type":"b","major":-1,"minor":0,"access":"mr"}"#),
        ])
        .unwrap();
    }

    #[test]
    fn effective_rules_append_runc_defaults() {
        let deny_all = spec(r#"{"allow":false,"access":"rwm"}"#);
        let eff = effective_rules(std::slice::from_ref(&deny_all), &[]);
        let text: Vec<String> = eff
            .iter()
            .map(|r| Rule::from_spec(r).unwrap().to_string())
            .collect();
        assert_eq!(
            text,
            [
                "a *:* rwm",
                "c *:* m",
                "b *:* m",
                "c 1:3 rwm",
                "c 1:8 rwm",
                "c 1:7 rwm",
                "c 5:0 rwm",
                "c 1:5 rwm",
                "c 1:9 rwm",
                "c 136:* rwm",
                "c 5:2 rwm",
                "c 10:200 rwm"
            ]
        );
        assert!(!eff[0].allow() && eff[1..].iter().all(|r| r.allow()));
        // No spec rules: the defaults on a deny-all baseline.
        let e = emulate(&effective_rules(&[], &[])).unwrap();
        assert!(!e.default_allow);
        assert_eq!(e.exceptions.len(), 11);
        // A listed /dev/null drops its default, so a deny of it sticks.
        let null: LinuxDevice =
            serde_json::from_str(r#"{"path":"/dev/null","type":"c","major":1,"minor":3}"#).unwrap();
        let eff = effective_rules(&[deny_all], &[null]);
        assert_eq!(eff.len(), 11);
        let e = emulate(&eff).unwrap();
        assert!(!e.exceptions.contains_key(&(Kind::Char, Some(1), Some(3))));
    }
}
