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
//! action, so their order does not matter. On cgroup v1 ([`apply_v1`]) the
//! cgroup's current `devices.list` is read the same way and only the
//! difference is written to `devices.deny` / `devices.allow` (a switch of
//! the default first if needed), so an update never opens a window in which
//! a device the container uses is denied. On cgroup v2 ([`apply_v2`]) the
//! exceptions become an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE`.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt;
use std::fs;
use std::os::fd::AsFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use oci_spec::runtime::{Linux, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::Hierarchy;
use crate::error::{Context, Error, Result};
use crate::sys::bpf;

/// Access bits, with the values of the kernel's `BPF_DEVCG_ACC_*`.
pub const MKNOD: u8 = 1;
pub const READ: u8 = 2;
pub const WRITE: u8 = 4;
const RWM: u8 = READ | WRITE | MKNOD;

/// `BPF_DEVCG_DEV_BLOCK` / `BPF_DEVCG_DEV_CHAR`.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

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

/// Key of an exception: type (never `All`), major, minor.
type Meta = (Kind, Option<u32>, Option<u32>);

/// The state of a cgroup v1 device controller: a default and exceptions
/// to it with their access bits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Emulator {
    default_allow: bool,
    exceptions: BTreeMap<Meta, u8>,
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
                let w = Rule {
                    allow: !self.default_allow,
                    kind: k,
                    major: wide.1,
                    minor: wide.2,
                    access: bits,
                };
                return Err(format!(
                    "cannot take {:?} away from part of the earlier wildcard rule {} {w}; the device cgroup cannot punch holes in wildcards",
                    access_text(r.access & bits),
                    if w.allow { "allow" } else { "deny" },
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
    fn from_list(text: &str) -> std::result::Result<Emulator, String> {
        let mut e = Emulator::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let bad = || format!("unexpected devices.list line {line:?}");
            let f: Vec<&str> = line.split([' ', ':']).collect();
            let [t, maj, min, acc] = f[..] else {
                return Err(bad());
            };
            let kind = match t {
                "a" => Kind::All,
                "b" => Kind::Block,
                "c" => Kind::Char,
                _ => return Err(bad()),
            };
            let num = |s: &str| -> std::result::Result<Option<u32>, String> {
                if s == "*" {
                    Ok(None)
                } else {
                    s.parse().map(Some).map_err(|_| bad())
                }
            };
            let mut access = 0;
            for c in acc.chars() {
                access |= match c {
                    'r' => READ,
                    'w' => WRITE,
                    'm' => MKNOD,
                    _ => return Err(bad()),
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
    fn transition(&self, target: &Emulator) -> Vec<Rule> {
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

    /// The state as a rule list for [`program`]: the default (as an `a`
    /// rule when it is allow) and the exceptions, all the other way.
    fn clean_rules(&self) -> Vec<Rule> {
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
fn emulate(rules: &[LinuxDeviceCgroup]) -> std::result::Result<Emulator, String> {
    let mut e = Emulator::default();
    for (i, r) in rules.iter().enumerate() {
        Rule::from_spec(r)
            .and_then(|rule| e.apply(&rule))
            .map_err(|why| format!("device rule {i} ({}): {why}", describe(r)))?;
    }
    Ok(e)
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

/// cgroup v1: writes devices.deny / devices.allow in `dir` (a devices
/// hierarchy cgroup directory) so that the cgroup ends with exactly `rules`
/// (a new cgroup starts with its parent's list). Only the difference from
/// the current `devices.list` is written, and the list is read back to
/// check the result, as runc does.
pub fn apply_v1(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let target =
        emulate(rules).map_err(|e| Error::Cgroup(format!("devices of {}: {e}", dir.display())))?;
    let current = read_list(dir)?;
    // One open file per direction: the kernel takes one rule per write.
    let mut files: [Option<fs::File>; 2] = [None, None];
    for r in current.transition(&target) {
        let name = if r.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        let file = dir.join(name);
        let line = r.to_string();
        let what = || format!("write {line:?} to {}", file.display());
        let slot = &mut files[usize::from(r.allow)];
        if slot.is_none() {
            *slot = Some(
                fs::OpenOptions::new()
                    .write(true)
                    .open(&file)
                    .ctx(Error::Cgroup, what)?,
            );
        }
        let f = slot.as_mut().expect("opened");
        std::io::Write::write_all(f, line.as_bytes()).ctx(Error::Cgroup, what)?;
    }
    drop(files);
    let after = read_list(dir)?;
    let ok = if target.default_allow {
        after.default_allow
    } else {
        after == target
    };
    if !ok {
        return Err(Error::Cgroup(format!(
            "{} does not hold the requested device rules after writing them",
            dir.join("devices.list").display()
        )));
    }
    Ok(())
}

fn read_list(dir: &Path) -> Result<Emulator> {
    let path = dir.join("devices.list");
    let text =
        fs::read_to_string(&path).ctx(Error::Cgroup, || format!("read {}", path.display()))?;
    Emulator::from_list(&text).map_err(|e| Error::Cgroup(format!("{}: {e}", path.display())))
}

/// cgroup v2: compiles `rules` (after the emulator, see the module doc)
/// into a `BPF_PROG_TYPE_CGROUP_DEVICE` program ([`program`]), loads it,
/// attaches it to the cgroup directory `dir` with `BPF_F_ALLOW_MULTI`, then
/// detaches every device program that was attached there before, so an
/// update replaces the program and never stacks them. Programs we may not
/// open (an LSM's) are left alone, as runc does: another device program can
/// only restrict further.
pub fn apply_v2(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let target =
        emulate(rules).map_err(|e| Error::Cgroup(format!("devices of {}: {e}", dir.display())))?;
    let insns: Vec<u64> = program(&target.clean_rules())
        .iter()
        .map(Insn::encode)
        .collect();
    let d = dir.display();
    let cg = open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(Error::Cgroup, || format!("open cgroup {d}"))?;
    let old = bpf::prog_query(cg.as_fd(), bpf::ATTACH_CGROUP_DEVICE)
        .ctx(Error::Cgroup, || format!("list the device programs of {d}"))?;
    let prog = load(&insns).map_err(|(e, log)| {
        let log = if log.is_empty() {
            String::new()
        } else {
            format!(" (verifier log: {log})")
        };
        Error::Cgroup(format!("load device program for {d}: {e:?}{log}"))
    })?;
    bpf::prog_attach(
        cg.as_fd(),
        prog.as_fd(),
        bpf::ATTACH_CGROUP_DEVICE,
        bpf::F_ALLOW_MULTI,
    )
    .ctx(Error::Cgroup, || format!("attach device program to {d}"))?;
    for id in old {
        let fd = match bpf::prog_get_fd_by_id(id) {
            Ok(fd) => fd,
            // Gone meanwhile, or not ours to touch (LSM policy).
            Err(Errno::ENOENT | Errno::EPERM | Errno::EACCES) => continue,
            Err(e) => {
                return Err(e).ctx(Error::Cgroup, || {
                    format!("open old device program {id} of {d}")
                });
            }
        };
        bpf::prog_detach(cg.as_fd(), fd.as_fd(), bpf::ATTACH_CGROUP_DEVICE)
            .ctx(Error::Cgroup, || {
                format!("detach old device program {id} from {d}")
            })?;
    }
    Ok(())
}

/// Loads the program; on failure loads it once more with the verifier log
/// on, and returns the first error with that log on one line.
fn load(insns: &[u64]) -> std::result::Result<std::os::fd::OwnedFd, (Errno, String)> {
    let license = CString::new("Apache").expect("no NUL");
    let name = "ocirun_devices";
    let err = match bpf::prog_load_cgroup_device(insns, &license, name, None) {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    let mut buf = vec![0u8; 1 << 16];
    let _ = bpf::prog_load_cgroup_device(insns, &license, name, Some(&mut buf));
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let log = String::from_utf8_lossy(&buf[..end]);
    let mut log = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if log.len() > 2000 {
        let cut = log.ceil_char_boundary(log.len() - 2000);
        log = format!("...{}", &log[cut..]);
    }
    Err((err, log))
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

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

/// The opcodes the device program uses: class | operation | source.
pub mod op {
    /// `BPF_LDX | BPF_MEM | BPF_W`: dst = *(u32 *)(src + off)
    pub const LDX_W: u8 = 0x61;
    /// `BPF_ALU | BPF_AND | BPF_K`: dst = (u32)dst & imm
    pub const AND32_K: u8 = 0x54;
    /// `BPF_ALU | BPF_RSH | BPF_K`: dst = (u32)dst >> imm
    pub const RSH32_K: u8 = 0x74;
    /// `BPF_ALU | BPF_MOV | BPF_X`: dst = (u32)src
    pub const MOV32_X: u8 = 0xbc;
    /// `BPF_ALU | BPF_MOV | BPF_K`: dst = (u32)imm
    pub const MOV32_K: u8 = 0xb4;
    /// `BPF_JMP32 | BPF_JNE | BPF_K`: if (u32)dst != imm goto +off
    pub const JNE32_K: u8 = 0x56;
    /// `BPF_JMP32 | BPF_JEQ | BPF_K`: if (u32)dst == imm goto +off
    pub const JEQ32_K: u8 = 0x16;
    /// `BPF_JMP | BPF_EXIT`: return r0
    pub const EXIT: u8 = 0x95;
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// The 8 bytes of `struct bpf_insn` (the register nibbles are a C
    /// bit-field, so their order follows the byte order).
    pub fn encode(&self) -> u64 {
        let regs = if cfg!(target_endian = "little") {
            (self.dst & 0xf) | (self.src << 4)
        } else {
            (self.dst << 4) | (self.src & 0xf)
        };
        let o = self.off.to_ne_bytes();
        let i = self.imm.to_ne_bytes();
        u64::from_ne_bytes([self.code, regs, o[0], o[1], i[0], i[1], i[2], i[3]])
    }
}

/// Compiles device rules into a `BPF_PROG_TYPE_CGROUP_DEVICE` program.
///
/// The program sees `struct bpf_cgroup_dev_ctx { u32 access_type; u32
/// major; u32 minor; }` in r1, the device type in the low 16 bits of
/// `access_type` and the requested access in the high 16, and returns 1 to
/// allow. Semantics: the last matching rule wins, default deny. Type `a`
/// and a `None` major or minor match anything. A request matches an allow
/// rule when all its access bits are in the rule's, and a deny rule when any
/// of them is (so `deny c 1:3 w` also stops an open for reading and
/// writing, as the v1 kernel does; runc's own program checks a subset here
/// too, which lets O_RDWR through such a deny in allow-all mode).
///
/// Rules are tested from the last to the first; a rule that matches
/// everything ends the program there, since the verifier refuses
/// unreachable instructions.
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    const R0: u8 = 0;
    const R1: u8 = 1;
    const R2: u8 = 2;
    const R3: u8 = 3;
    const R4: u8 = 4;
    const R5: u8 = 5;
    let mut p = vec![
        // r2 = device type, r3 = access, r4 = major, r5 = minor
        Insn::new(op::LDX_W, R2, R1, 0, 0),
        Insn::new(op::AND32_K, R2, 0, 0, 0xffff),
        Insn::new(op::LDX_W, R3, R1, 0, 0),
        Insn::new(op::RSH32_K, R3, 0, 0, 16),
        Insn::new(op::LDX_W, R4, R1, 4, 0),
        Insn::new(op::LDX_W, R5, R1, 8, 0),
    ];
    for r in rules.iter().rev() {
        // Each test jumps past the end of the block when it fails; the
        // offsets are filled in once the block's length is known.
        let mut b = Vec::new();
        let mut skips = Vec::new();
        let mut skip_unless = |b: &mut Vec<Insn>, code, reg, imm: i32| {
            skips.push(b.len());
            b.push(Insn::new(code, reg, 0, 0, imm));
        };
        match r.kind {
            Kind::All => {}
            Kind::Block => skip_unless(&mut b, op::JNE32_K, R2, DEV_BLOCK),
            Kind::Char => skip_unless(&mut b, op::JNE32_K, R2, DEV_CHAR),
        }
        if r.access & RWM != RWM {
            b.push(Insn::new(op::MOV32_X, R1, R3, 0, 0));
            if r.allow {
                // Every requested bit must be in the rule.
                b.push(Insn::new(op::AND32_K, R1, 0, 0, !(r.access as i32)));
                skip_unless(&mut b, op::JNE32_K, R1, 0);
            } else {
                // Any requested bit in the rule.
                b.push(Insn::new(op::AND32_K, R1, 0, 0, r.access as i32));
                skip_unless(&mut b, op::JEQ32_K, R1, 0);
            }
        }
        if let Some(m) = r.major {
            skip_unless(&mut b, op::JNE32_K, R4, m as i32);
        }
        if let Some(m) = r.minor {
            skip_unless(&mut b, op::JNE32_K, R5, m as i32);
        }
        b.push(Insn::new(op::MOV32_K, R0, 0, 0, r.allow as i32));
        b.push(Insn::new(op::EXIT, 0, 0, 0, 0));
        let end = b.len();
        for i in &skips {
            b[*i].off = (end - i - 1) as i16;
        }
        p.extend(b);
        if skips.is_empty() {
            return p;
        }
    }
    p.push(Insn::new(op::MOV32_K, R0, 0, 0, 0));
    p.push(Insn::new(op::EXIT, 0, 0, 0, 0));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spec rule from its JSON.
    fn spec(json: &str) -> LinuxDeviceCgroup {
        serde_json::from_str(json).unwrap()
    }

    /// `"allow c 1:3 rw"` → a spec rule (`*` for a wildcard).
    fn sr(text: &str) -> LinuxDeviceCgroup {
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

    fn rule(text: &str) -> Rule {
        Rule::from_spec(&sr(text)).unwrap()
    }

    // --- a tiny interpreter for the opcodes program() emits, plus the
    // structural checks of the kernel verifier that matter here.

    fn check_shape(p: &[Insn]) {
        let mut reach = vec![false; p.len()];
        let mut todo = vec![0usize];
        while let Some(pc) = todo.pop() {
            assert!(pc < p.len(), "falls off the end at {pc}");
            if reach[pc] {
                continue;
            }
            reach[pc] = true;
            match p[pc].code {
                op::EXIT => {}
                op::JNE32_K | op::JEQ32_K => {
                    assert!(p[pc].off >= 0, "backward jump at {pc}");
                    todo.push(pc + 1);
                    todo.push(pc + 1 + p[pc].off as usize);
                }
                _ => todo.push(pc + 1),
            }
        }
        assert!(reach.iter().all(|r| *r), "unreachable insns in {p:?}");
    }

    fn run(p: &[Insn], kind: i32, major: u32, minor: u32, access: u8) -> bool {
        check_shape(p);
        let ctx = [((access as u32) << 16) | kind as u32, major, minor];
        let mut reg = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (d, s) = (i.dst as usize, i.src as usize);
            pc += 1;
            match i.code {
                op::LDX_W => {
                    assert_eq!(s, 1, "loads only from the context");
                    reg[d] = ctx[i.off as usize / 4] as u64;
                }
                op::AND32_K => reg[d] = (reg[d] as u32 & i.imm as u32) as u64,
                op::RSH32_K => reg[d] = ((reg[d] as u32) >> i.imm) as u64,
                op::MOV32_X => reg[d] = reg[s] as u32 as u64,
                op::MOV32_K => reg[d] = i.imm as u32 as u64,
                op::JNE32_K if reg[d] as u32 != i.imm as u32 => pc += i.off as usize,
                op::JEQ32_K if reg[d] as u32 == i.imm as u32 => pc += i.off as usize,
                op::JNE32_K | op::JEQ32_K => {}
                op::EXIT => return reg[0] == 1,
                c => panic!("unknown opcode {c:#x}"),
            }
        }
    }

    const C: i32 = DEV_CHAR;
    const B: i32 = DEV_BLOCK;

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

    #[test]
    fn program_allow_list() {
        let p = program(&[
            rule("allow c 1:3 rwm"),
            rule("allow c 1:5 r"),
            rule("allow c 136:* rw"),
            rule("allow b *:* m"),
        ]);
        assert!(run(&p, C, 1, 3, READ | WRITE));
        assert!(run(&p, C, 1, 3, MKNOD));
        assert!(run(&p, C, 1, 5, READ));
        assert!(!run(&p, C, 1, 5, WRITE));
        assert!(!run(&p, C, 1, 5, READ | WRITE));
        assert!(run(&p, C, 136, 7, READ | WRITE));
        assert!(!run(&p, C, 136, 7, MKNOD));
        assert!(run(&p, B, 8, 0, MKNOD));
        assert!(!run(&p, B, 8, 0, READ));
        assert!(!run(&p, C, 1, 1, READ), "default deny");
        assert!(!run(&p, B, 1, 3, READ), "type matters");
    }

    #[test]
    fn program_last_match_wins_and_deny_matches_any_bit() {
        let p = program(&[rule("allow c *:* rwm"), rule("deny c 1:3 w")]);
        assert!(run(&p, C, 1, 3, READ));
        assert!(!run(&p, C, 1, 3, WRITE));
        assert!(!run(&p, C, 1, 3, READ | WRITE));
        assert!(run(&p, C, 1, 4, WRITE));
        let p = program(&[rule("deny c 1:3 w"), rule("allow c *:* rwm")]);
        assert!(run(&p, C, 1, 3, WRITE));
        // Type a matches every device; a final unconditional rule ends the program.
        let p = program(&[rule("deny c 1:1 rwm"), rule("allow a *:* rwm")]);
        assert!(run(&p, C, 1, 1, READ) && run(&p, B, 7, 7, WRITE));
        assert_eq!(p.len(), 8);
        let p = program(&[
            rule("allow a *:* rwm"),
            rule("deny c 1:1 m"),
            rule("deny b 8:* rw"),
        ]);
        assert!(!run(&p, C, 1, 1, MKNOD));
        assert!(run(&p, C, 1, 1, READ));
        assert!(!run(&p, B, 8, 16, READ));
        assert!(run(&p, B, 8, 16, MKNOD));
        assert!(run(&p, B, 9, 0, READ));
        // Empty: deny everything.
        let p = program(&[]);
        assert!(!run(&p, C, 1, 3, READ));
        // Large numbers compare as u32.
        let p = program(&[rule("allow c 4294967295:2147483648 r")]);
        assert!(run(&p, C, u32::MAX, 1 << 31, READ));
        assert!(!run(&p, C, u32::MAX, 0, READ));
    }

    #[test]
    fn program_from_effective_rules() {
        // A container's usual rules: containerd's deny-all, runc's defaults.
        let mut rules = vec![
            spec(r#"{"allow":false,"access":"rwm"}"#),
            sr("allow c 1:1 r"),
        ];
        rules = effective_rules(&rules, &[]);
        let p = program(&emulate(&rules).unwrap().clean_rules());
        assert!(run(&p, C, 1, 3, READ | WRITE)); // /dev/null
        assert!(run(&p, C, 136, 0, READ | WRITE)); // a pty
        assert!(run(&p, C, 1, 1, READ));
        assert!(!run(&p, C, 1, 1, WRITE));
        assert!(run(&p, B, 8, 0, MKNOD)); // mknod of anything
        assert!(!run(&p, B, 8, 0, READ));
        assert!(!run(&p, C, 10, 229, READ)); // /dev/fuse
    }

    #[test]
    fn encoding() {
        let i = Insn::new(op::LDX_W, 3, 1, 8, -2);
        let b = i.encode().to_ne_bytes();
        if cfg!(target_endian = "little") {
            assert_eq!(b, [0x61, 0x13, 8, 0, 0xfe, 0xff, 0xff, 0xff]);
        }
    }

    /// The kernel's verifier accepts what we generate (needs root; skipped
    /// with a note elsewhere).
    #[test]
    fn kernel_loads_the_programs() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: not root");
            return;
        }
        let lists: Vec<Vec<Rule>> = vec![
            vec![],
            vec![rule("allow a *:* rwm")],
            vec![rule("allow a *:* rwm"), rule("deny c 1:1 m")],
            emulate(&effective_rules(&[], &[])).unwrap().clean_rules(),
            vec![rule("allow c 4294967295:* r"), rule("deny b *:7 rw")],
        ];
        for rules in lists {
            let insns: Vec<u64> = program(&rules).iter().map(Insn::encode).collect();
            if let Err((e, log)) = load(&insns) {
                panic!("load {rules:?}: {e}: {log}");
            }
        }
        // A broken program fails with the verifier's words in the error.
        let bad = [Insn::new(op::EXIT, 0, 0, 0, 0).encode()];
        let (e, log) = load(&bad).unwrap_err();
        assert_eq!(e, Errno::EACCES);
        assert!(log.contains("R0 !read_ok"), "{log}");
    }

    /// Attaching for real: the hybrid host's unified mount, or a pure v2
    /// host's root, takes device programs too.
    #[test]
    fn apply_v2_enforces_and_replaces() {
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let Some(root) = mounts
            .lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .find(|f| f.len() > 2 && f[2] == "cgroup2")
            .map(|f| f[1].to_string())
        else {
            eprintln!("skipped: no cgroup2 mount");
            return;
        };
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: not root");
            return;
        }
        let dir = Path::new(&root).join(format!("ocirun-devices-test-{}", std::process::id()));
        fs::create_dir(&dir).unwrap();
        let try_in = |script: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "echo $$ > {}/cgroup.procs && {script}",
                    dir.display()
                ))
                .status()
                .unwrap()
                .success()
        };
        let result = std::panic::catch_unwind(|| {
            let rules = vec![spec(r#"{"allow":true,"access":"rwm"}"#), sr("deny c 1:3 w")];
            apply_v2(&dir, &rules).unwrap();
            apply_v2(&dir, &rules).unwrap();
            let cg = open(&dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
            let ids = bpf::prog_query(cg.as_fd(), bpf::ATTACH_CGROUP_DEVICE).unwrap();
            assert_eq!(ids.len(), 1, "programs stack: {ids:?}");
            assert!(try_in("cat /dev/null"));
            assert!(!try_in("echo x > /dev/null"));
            // Replaced by one that allows the write again.
            apply_v2(&dir, &rules[..1]).unwrap();
            assert!(try_in("echo x > /dev/null"));
            let ids = bpf::prog_query(cg.as_fd(), bpf::ATTACH_CGROUP_DEVICE).unwrap();
            assert_eq!(ids.len(), 1);
        });
        fs::remove_dir(&dir).unwrap();
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
    }

    /// cgroup v1: the list ends exactly as asked, first from allow-all, then
    /// as an update.
    #[test]
    fn apply_v1_sets_the_list() {
        let base = Path::new("/sys/fs/cgroup/devices");
        if !base.join("devices.list").exists() || !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: no v1 devices hierarchy");
            return;
        }
        let dir = base.join(format!("ocirun-devices-test-{}", std::process::id()));
        fs::create_dir(&dir).unwrap();
        let result = std::panic::catch_unwind(|| {
            let rules = vec![sr("allow c 1:3 rw"), sr("allow b 8:* m")];
            apply_v1(&dir, &rules).unwrap();
            let list = fs::read_to_string(dir.join("devices.list")).unwrap();
            let mut lines: Vec<&str> = list.lines().collect();
            lines.sort();
            assert_eq!(lines, ["b 8:* m", "c 1:3 rw"]);
            apply_v1(&dir, &[sr("allow c 1:3 r")]).unwrap();
            assert_eq!(
                fs::read_to_string(dir.join("devices.list")).unwrap(),
                "c 1:3 r\n"
            );
            apply_v1(&dir, &[spec(r#"{"allow":true,"access":"rwm"}"#)]).unwrap();
            assert_eq!(
                fs::read_to_string(dir.join("devices.list")).unwrap(),
                "a *:* rwm\n"
            );
        });
        fs::remove_dir(&dir).unwrap();
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
    }
}
