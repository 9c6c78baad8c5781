//! The systemd cgroup driver (`--systemd-cgroup`), cgroup v2 only.
//!
//! `cgroupsPath` is `slice:prefix:name` (runc's form and defaults): the
//! container is placed in the transient scope unit `prefix-name.scope` (or
//! the slice `name` when it ends in `.slice`) inside `slice` (`system.slice`
//! when empty, `user.slice` rootless), which systemd creates with
//! `StartTransientUnit` when the init's parent calls [`Manager::apply`]
//! with the init's pid. The unit gets `Delegate=yes`, the accounting
//! switches and the resource properties systemd has (`MemoryMax`,
//! `CPUWeight`, `TasksMax`, `DeviceAllow`, ...), each derived from the very
//! cgroup file write ocirun makes ([`resource_props`]), so systemd's view
//! and the files agree; what systemd has no property for is written to the
//! files only, as runc does. Everything after the unit exists (the device
//! program, limits, freezing, pids, statistics) is the cgroupfs v2 code at
//! the unit's directory. `update` sets the properties with
//! `SetUnitProperties` and then the files; `delete` stops the unit
//! (`StopUnit`) and waits for the job.
//!
//! D-Bus is spoken only by the parent (ocirun itself), never by a process
//! that is forked afterwards, through libdbus, which starts no threads
//! ([`bus`]).

pub mod bus;

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

use nix::unistd::Pid;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};
use serde::{Deserialize, Serialize};

use super::resources::{self, CgroupWrite};
use super::{Hierarchy, Manager, V2};
use crate::error::{Error, Result};

/// What state.json keeps of a container placed by systemd, so a later
/// `delete` or `update` from a fresh ocirun talks to the same manager.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SavedUnit {
    /// `prefix-name.scope`, or a slice.
    pub unit: String,
    /// The user's manager (rootless) rather than the system's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub user: bool,
}

/// `cgroupsPath` split as runc does: `slice:prefix:name`. An empty or
/// missing path is `:ocirun:<id>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitPath {
    /// The parent slice unit (`system.slice`, `user.slice` rootless).
    pub slice: String,
    /// The unit's name: `prefix-name.scope`, or `name` when it is a slice.
    pub unit: String,
    /// The unit's cgroup relative to its manager's root cgroup:
    /// `/system.slice/ocirun-x.scope`, `/a.slice/a-b.slice/c.scope`.
    pub cgroup: String,
}

impl UnitPath {
    pub fn parse(path: Option<&str>, id: &str, rootless: bool) -> Result<UnitPath> {
        let (slice, prefix, name) = match path.filter(|p| !p.is_empty()) {
            None => ("", "ocirun", id),
            Some(p) => {
                let parts: Vec<&str> = p.split(':').collect();
                let [slice, prefix, name] = parts[..] else {
                    return Err(Error::Cgroup(format!(
                        "cgroupsPath {p:?}: the systemd cgroup driver wants \"slice:prefix:name\""
                    )));
                };
                (slice, prefix, name)
            }
        };
        let slice = match slice {
            "" if rootless => "user.slice",
            "" => "system.slice",
            s => s,
        };
        let unit = unit_name(prefix, name)?;
        let cgroup = format!("{}/{unit}", expand_slice(slice)?.trim_end_matches('/'));
        Ok(UnitPath {
            slice: slice.to_string(),
            unit,
            cgroup,
        })
    }

    pub fn is_slice(&self) -> bool {
        self.unit.ends_with(".slice")
    }
}

/// `prefix-name.scope`, or `name` itself when it is a slice (runc's
/// `getUnitName`). A name that already ends in `.scope` is not given the
/// suffix twice. Characters systemd does not allow in unit names are
/// refused here, before anything exists.
fn unit_name(prefix: &str, name: &str) -> Result<String> {
    if name.is_empty() {
        return Err(Error::Cgroup(format!(
            "cgroupsPath name is empty (prefix {prefix:?}): the systemd cgroup driver wants \"slice:prefix:name\""
        )));
    }
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{}.scope", name.trim_end_matches(".scope"))
    } else {
        format!("{prefix}-{}.scope", name.trim_end_matches(".scope"))
    };
    let stem = unit
        .strip_suffix(".scope")
        .or_else(|| unit.strip_suffix(".slice"))
        .unwrap_or(&unit);
    let ok = !stem.is_empty()
        && !stem.starts_with('-')
        && unit.len() <= 255
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":-_.\\@".contains(&b));
    if !ok {
        return Err(Error::Cgroup(format!(
            "systemd unit name {unit:?} (from prefix {prefix:?} and name {name:?}) is not valid: use letters, digits and : - _ . \\ @"
        )));
    }
    Ok(unit)
}

/// A slice's cgroup path, as systemd nests them: `a-b-c.slice` is
/// `/a.slice/a-b.slice/a-b-c.slice`, `-.slice` the root (runc's
/// `ExpandSlice`).
pub fn expand_slice(slice: &str) -> Result<String> {
    let invalid = || {
        Error::Cgroup(format!(
            "invalid slice name {slice:?}: want e.g. system.slice or a-b.slice"
        ))
    };
    let stem = slice.strip_suffix(".slice").ok_or_else(invalid)?;
    if stem.is_empty() || slice.contains('/') {
        return Err(invalid());
    }
    if stem == "-" {
        return Ok("/".into());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if part.is_empty() {
            return Err(invalid());
        }
        path.push_str(&format!("/{prefix}{part}.slice"));
        prefix.push_str(part);
        prefix.push('-');
    }
    Ok(path)
}

/// A unit property's value, as D-Bus will carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Bool(bool),
    Str(String),
    U64(u64),
    /// `au`: PIDs.
    U32s(Vec<u32>),
    /// `ay`: a CPU or NUMA node mask.
    Bytes(Vec<u8>),
    /// `a(ss)`: DeviceAllow.
    StrPairs(Vec<(String, String)>),
    /// `a(st)`: per-device IO weights and limits.
    DevU64s(Vec<(String, u64)>),
}

/// One unit property: name and value.
pub type Prop = (&'static str, Value);

/// systemd's `USEC_INFINITY` / `CGROUP_LIMIT_MAX`: no limit.
pub const INFINITY: u64 = u64::MAX;

/// The properties every unit gets when it is started (runc's set):
/// description, placement, delegation, the init's pid, accounting on for
/// every controller, no default dependencies.
pub fn unit_props(u: &UnitPath, id: &str, pid: Option<Pid>) -> Vec<Prop> {
    let mut p: Vec<Prop> = vec![("Description", Value::Str(format!("ocirun container {id}")))];
    if u.is_slice() {
        p.push(("Wants", Value::Str(u.slice.clone())));
    } else {
        p.push(("Slice", Value::Str(u.slice.clone())));
        p.push(("Delegate", Value::Bool(true)));
        if let Some(pid) = pid {
            p.push(("PIDs", Value::U32s(vec![pid.as_raw() as u32])));
        }
    }
    for a in [
        "MemoryAccounting",
        "CPUAccounting",
        "IOAccounting",
        "TasksAccounting",
    ] {
        p.push((a, Value::Bool(true)));
    }
    p.push(("DefaultDependencies", Value::Bool(false)));
    p
}

/// `DevicePolicy` and `DeviceAllow` for the container's device rules (the
/// spec's with runc's defaults); the empty `DeviceAllow` first clears any
/// entries a unit already has.
pub fn device_props(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Prop>> {
    let (policy, allow) = super::devices::systemd_policy(rules).map_err(Error::Cgroup)?;
    Ok(vec![
        ("DeviceAllow", Value::StrPairs(Vec::new())),
        ("DevicePolicy", Value::Str(policy.into())),
        ("DeviceAllow", Value::StrPairs(allow)),
    ])
}

/// The systemd properties for a list of cgroup v2 writes (the output of
/// `resources::v2`), in their order, so systemd sets each value ocirun
/// writes. A CPU quota is rounded up to what systemd can hold (1% of a
/// CPU-second per second, as runc does), and its write is changed to the
/// rounded value so both agree. Properties need systemd `version`:
/// `CPUQuotaPeriodUSec` 242, `AllowedCPUs`/`AllowedMemoryNodes` 244; older
/// ones get the file only. Writes without a property are left to the files.
pub fn resource_props(writes: &mut [CgroupWrite], version: u32) -> Result<Vec<Prop>> {
    let mut out = Vec::new();
    for write in writes.iter_mut() {
        let invalid =
            |why: &str| Error::Cgroup(format!("{} value {:?}: {why}", write.file, write.value));
        let num = |v: &str| -> Result<u64> {
            if v == "max" {
                return Ok(INFINITY);
            }
            v.parse().map_err(|_| invalid("not a number or \"max\""))
        };
        let v = write.value.trim();
        match write.file.as_str() {
            "memory.max" => out.push(("MemoryMax", Value::U64(num(v)?))),
            "memory.high" => out.push(("MemoryHigh", Value::U64(num(v)?))),
            "memory.low" => out.push(("MemoryLow", Value::U64(num(v)?))),
            "memory.min" => out.push(("MemoryMin", Value::U64(num(v)?))),
            "memory.swap.max" => out.push(("MemorySwapMax", Value::U64(num(v)?))),
            "pids.max" => {
                // systemd refuses TasksMax=0 (runc's choice: 1).
                out.push(("TasksMax", Value::U64(num(v)?.max(1))))
            }
            "cpu.weight" => out.push(("CPUWeight", Value::U64(num(v)?))),
            "cpu.max" => {
                let mut f = v.split_whitespace();
                let quota = f.next().ok_or_else(|| invalid("empty"))?;
                let period: Option<u64> = match f.next() {
                    Some(p) => Some(p.parse().map_err(|_| invalid("period is not a number"))?),
                    None => None,
                };
                if let Some(p) = period
                    && version >= 242
                {
                    out.push(("CPUQuotaPeriodUSec", Value::U64(p)));
                }
                let per_sec = if quota == "max" {
                    INFINITY
                } else {
                    let q: u64 = quota
                        .parse()
                        .map_err(|_| invalid("quota is not a number"))?;
                    let p = period.unwrap_or(100_000).max(1);
                    let mut s = q.saturating_mul(1_000_000) / p;
                    if !s.is_multiple_of(10_000) {
                        s = (s / 10_000 + 1) * 10_000;
                        let rounded = s * p / 1_000_000;
                        write.value = match period {
                            Some(p) => format!("{rounded} {p}"),
                            None => rounded.to_string(),
                        };
                    }
                    s
                };
                out.push(("CPUQuotaPerSecUSec", Value::U64(per_sec)));
            }
            "cpuset.cpus" | "cpuset.mems" if version >= 244 => {
                let name = if write.file == "cpuset.cpus" {
                    "AllowedCPUs"
                } else {
                    "AllowedMemoryNodes"
                };
                out.push((
                    name,
                    Value::Bytes(range_to_bits(v).map_err(|e| invalid(&e))?),
                ));
            }
            "io.weight" | "io.bfq.weight" => {
                // systemd's IOWeight is on io.weight's scale (1..10000).
                let scale = |n: u64| {
                    if write.file == "io.bfq.weight" {
                        resources::blkio_to_io_weight(n.min(1000) as u16)
                    } else {
                        n
                    }
                };
                match v.split_once(' ') {
                    Some((dev, n)) if dev != "default" => {
                        let n = scale(
                            n.trim()
                                .parse()
                                .map_err(|_| invalid("not \"MAJ:MIN WEIGHT\""))?,
                        );
                        out.push((
                            "IODeviceWeight",
                            Value::DevU64s(vec![(format!("/dev/block/{dev}"), n)]),
                        ));
                    }
                    Some((_, n)) => out.push(("IOWeight", Value::U64(scale(num(n.trim())?)))),
                    None => out.push(("IOWeight", Value::U64(scale(num(v)?)))),
                }
            }
            "io.max" => {
                let (dev, limits) = v
                    .split_once(' ')
                    .ok_or_else(|| invalid("not \"MAJ:MIN KEY=VALUE\""))?;
                for kv in limits.split_whitespace() {
                    let (k, n) = kv.split_once('=').ok_or_else(|| invalid("not KEY=VALUE"))?;
                    let name = match k {
                        "rbps" => "IOReadBandwidthMax",
                        "wbps" => "IOWriteBandwidthMax",
                        "riops" => "IOReadIOPSMax",
                        "wiops" => "IOWriteIOPSMax",
                        _ => continue,
                    };
                    out.push((
                        name,
                        Value::DevU64s(vec![(format!("/dev/block/{dev}"), num(n)?)]),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A cpuset list (`0-2,7`) as the byte mask systemd's `AllowedCPUs` takes:
/// bit N of byte N/8 is CPU N.
pub fn range_to_bits(list: &str) -> std::result::Result<Vec<u8>, String> {
    let mut bits: Vec<u8> = Vec::new();
    let mut set = |n: u32| {
        let i = (n / 8) as usize;
        if bits.len() <= i {
            bits.resize(i + 1, 0);
        }
        bits[i] |= 1 << (n % 8);
    };
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let n = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| format!("{s:?} is not a number"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (n(a)?, n(b)?);
                if a > b || b - a > 65536 {
                    return Err(format!("bad range {part:?}"));
                }
                (a..=b).for_each(&mut set);
            }
            None => set(n(part)?),
        }
    }
    if bits.is_empty() {
        return Err("empty list".into());
    }
    Ok(bits)
}

/// The systemd driver: a unit from systemd, files through the cgroupfs v2
/// code at the unit's directory.
pub struct Systemd {
    path: UnitPath,
    user: bool,
    id: String,
    fs: V2,
    /// The limits and device rules written once the unit exists (`create`).
    resources: Option<LinuxResources>,
    devices: Option<Vec<LinuxDeviceCgroup>>,
    bus: RefCell<Option<bus::Bus>>,
    /// Whether the unit is ours to stop: started by this manager, or
    /// recorded in state.json (which happens only once it was).
    started: Cell<bool>,
}

/// Whether systemd is the init system (`sd_booted`: /run/systemd/system).
pub fn running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn need_v2() -> Result<()> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let v2 = super::parse_mountinfo(&mountinfo)
        .iter()
        .any(|m| m.point == "/sys/fs/cgroup" && m.fstype == "cgroup2");
    if !v2 {
        return Err(Error::Cgroup(
            "the systemd cgroup driver needs cgroup v2 (a cgroup2 mount at /sys/fs/cgroup): this host has cgroup v1"
                .into(),
        ));
    }
    Ok(())
}

impl Systemd {
    /// The driver for a new container: checks systemd is there, the host is
    /// cgroup v2 and `cgroupsPath` is well formed, and connects to the bus,
    /// all before anything of the container exists. `devices` are the
    /// effective device rules (None: left alone, rootless).
    pub fn for_container(
        cgroups_path: Option<&str>,
        id: &str,
        rootless: bool,
        resources: Option<LinuxResources>,
        devices: Option<Vec<LinuxDeviceCgroup>>,
    ) -> Result<Systemd> {
        let path = UnitPath::parse(cgroups_path, id, rootless)?;
        if !running() {
            return Err(Error::Cgroup(
                "systemd is not running (no /run/systemd/system): the systemd cgroup driver (--systemd-cgroup) needs it"
                    .into(),
            ));
        }
        need_v2()?;
        if let Some(r) = &resources {
            resources::v2(r, resources::V2Env::default())?;
        }
        if let Some(d) = &devices {
            device_props(d)?;
        }
        let bus = bus::Bus::connect(rootless)?;
        let root = if rootless {
            bus.manager_control_group()?
        } else {
            String::new()
        };
        let dir = PathBuf::from(format!(
            "/sys/fs/cgroup{}{}",
            root.trim_end_matches('/'),
            path.cgroup
        ));
        Ok(Systemd {
            fs: fs_at(dir),
            path,
            user: rootless,
            id: id.to_string(),
            resources,
            devices,
            bus: RefCell::new(Some(bus)),
            started: Cell::new(false),
        })
    }

    /// The driver of an existing container, from state.json.
    pub fn from_saved(hs: &[Hierarchy], saved: &SavedUnit) -> Systemd {
        let dir = hs
            .first()
            .map(|h| h.dir.clone())
            .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"));
        Systemd {
            fs: fs_at(dir),
            path: UnitPath {
                slice: String::new(),
                unit: saved.unit.clone(),
                cgroup: String::new(),
            },
            user: saved.user,
            id: String::new(),
            resources: None,
            devices: None,
            bus: RefCell::new(None),
            started: Cell::new(true),
        }
    }

    pub fn saved(&self) -> SavedUnit {
        SavedUnit {
            unit: self.path.unit.clone(),
            user: self.user,
        }
    }

    fn with_bus<T>(&self, f: impl FnOnce(&bus::Bus) -> Result<T>) -> Result<T> {
        let mut b = self.bus.borrow_mut();
        if b.is_none() {
            *b = Some(bus::Bus::connect(self.user)?);
        }
        f(b.as_ref().expect("connected"))
    }

    fn dir(&self) -> &Path {
        &self.fs.h[0].dir
    }

    /// The writes for `r` at the unit's directory and the properties that
    /// say the same to systemd.
    fn plan(&self, r: &LinuxResources, version: u32) -> Result<(Vec<CgroupWrite>, Vec<Prop>)> {
        let env = resources::V2Env {
            bfq: self.dir().join("io.bfq.weight").exists(),
        };
        let mut writes = resources::v2(r, env)?;
        let props = resource_props(&mut writes, version)?;
        Ok((writes, props))
    }
}

fn fs_at(dir: PathBuf) -> V2 {
    V2 {
        h: [Hierarchy {
            mount: PathBuf::from("/sys/fs/cgroup"),
            v2: true,
            controllers: String::new(),
            dir,
        }],
    }
}

impl Manager for Systemd {
    /// Nothing yet: systemd makes the cgroup when the unit starts with the
    /// init's pid (`apply`).
    fn create(&self) -> Result<()> {
        Ok(())
    }

    fn limits_at_apply(&self) -> bool {
        true
    }

    /// The unit once it was started: a unit of that name that systemd
    /// refused to start again (someone else's) is never recorded, so no
    /// `delete` stops it.
    fn systemd_unit(&self) -> Option<SavedUnit> {
        self.started.get().then(|| self.saved())
    }

    /// Starts the unit with `pid` in it and the container's limits and
    /// device rules as properties, waits for systemd's job, then writes
    /// the device program and the limits into the unit's cgroup.
    fn apply(&self, pid: Pid) -> Result<()> {
        let version = self.with_bus(|b| b.version())?;
        let mut props = unit_props(&self.path, &self.id, Some(pid));
        if let Some(d) = &self.devices {
            props.extend(device_props(d)?);
        }
        if let Some(r) = &self.resources {
            props.extend(self.plan(r, version)?.1);
        }
        self.with_bus(|b| b.start_transient_unit(&self.path.unit, &props))?;
        self.started.set(true);
        let dir = self.dir();
        if !dir.is_dir() {
            return Err(Error::Cgroup(format!(
                "systemd started unit {} but its cgroup {} does not exist",
                self.path.unit,
                dir.display()
            )));
        }
        if self.path.is_slice() {
            // A slice takes no PIDs property: the init joins its cgroup.
            super::write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        // Controllers systemd does not manage (hugetlb, rdma, misc).
        super::enable_controllers(&self.fs.h[0], None, true);
        if let Some(d) = &self.devices {
            super::devices::apply_v2(dir, d)?;
        }
        if let Some(r) = &self.resources {
            let (writes, _) = self.plan(r, version)?;
            super::apply_writes(&writes, |_| Ok(dir.to_path_buf()))?;
        }
        Ok(())
    }

    fn procs(&self) -> Result<Vec<Pid>> {
        self.fs.procs()
    }

    /// Stops the unit and waits for it; then the directory is removed if
    /// systemd left it. A unit that is gone already (its processes all
    /// exited) is fine, and so is one whose directory is gone when systemd
    /// cannot be reached. A unit this manager never started is not touched.
    fn destroy(&self) -> Result<()> {
        if !self.started.get() {
            return self.fs.destroy();
        }
        let stopped = self.with_bus(|b| b.stop_unit(&self.path.unit));
        match stopped {
            Ok(()) => {}
            Err(_) if !self.dir().exists() => return Ok(()),
            Err(e) => return Err(e),
        }
        self.fs.destroy()
    }

    fn hierarchies(&self) -> &[Hierarchy] {
        self.fs.hierarchies()
    }

    /// `update`: the values into the files, then the same values as unit
    /// properties through `SetUnitProperties`. Files first: a value the
    /// kernel refuses fails the update before systemd is told anything
    /// (the files written are put back), and a refusal from systemd puts
    /// the files back too, so both views keep the old limits.
    fn set(&self, r: &LinuxResources) -> Result<()> {
        let dir = self.dir();
        super::check_memory_usage(r, dir, "memory.current")?;
        let version = self.with_bus(|b| b.version())?;
        let (writes, props) = self.plan(r, version)?;
        let old: Vec<(PathBuf, String)> = writes
            .iter()
            .filter_map(|write| {
                let p = dir.join(&write.file);
                let o = std::fs::read_to_string(&p).ok()?;
                super::restorable(&write.file, &o).then_some((p, o))
            })
            .collect();
        super::apply_writes(&writes, |_| Ok(dir.to_path_buf()))?;
        if props.is_empty() {
            return Ok(());
        }
        self.with_bus(|b| b.set_unit_properties(&self.path.unit, &props))
            .inspect_err(|_| {
                for (p, o) in old.iter().rev() {
                    let _ = crate::sys::fd::write_existing(p, o.trim().as_bytes());
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_expand_as_systemd_nests_them() {
        assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
        assert_eq!(
            expand_slice("a-b-c.slice").unwrap(),
            "/a.slice/a-b.slice/a-b-c.slice"
        );
        assert_eq!(expand_slice("-.slice").unwrap(), "/");
        for invalid in [
            "",
            ".slice",
            "a",
            "a--b.slice",
            "-a.slice",
            "a/b.slice",
            "a-.slice",
        ] {
            assert!(expand_slice(invalid).is_err(), "{invalid:?}");
        }
    }

    #[test]
    fn cgroups_path_forms() {
        let p = UnitPath::parse(Some("system.slice:docker:abc"), "x", false).unwrap();
        assert_eq!(p.unit, "docker-abc.scope");
        assert_eq!(p.slice, "system.slice");
        assert_eq!(p.cgroup, "/system.slice/docker-abc.scope");
        let p = UnitPath::parse(Some(":p:n"), "x", false).unwrap();
        assert_eq!(p.cgroup, "/system.slice/p-n.scope");
        let p = UnitPath::parse(Some(":p:n"), "x", true).unwrap();
        assert_eq!(p.cgroup, "/user.slice/p-n.scope");
        let p = UnitPath::parse(None, "ctr", false).unwrap();
        assert_eq!(p.unit, "ocirun-ctr.scope");
        let p = UnitPath::parse(Some("a-b.slice:p:inner.slice"), "x", false).unwrap();
        assert_eq!(p.unit, "inner.slice");
        assert!(p.is_slice());
        assert_eq!(p.cgroup, "/a.slice/a-b.slice/inner.slice");
        let p = UnitPath::parse(Some("-.slice:p:n"), "x", false).unwrap();
        assert_eq!(p.cgroup, "/p-n.scope");
        let p = UnitPath::parse(Some("system.slice::n.scope"), "x", false).unwrap();
        assert_eq!(p.unit, "n.scope");
        for invalid in [
            "a:b",
            "/abs/path",
            "a:b:c:d",
            "x:p:n",
            "system.slice:p:a/b",
            "system.slice:p:",
        ] {
            let e = UnitPath::parse(Some(invalid), "x", false);
            assert!(e.is_err(), "{invalid:?} gave {e:?}");
        }
    }

    #[test]
    fn cpu_masks() {
        assert_eq!(range_to_bits("0").unwrap(), [1]);
        assert_eq!(range_to_bits("0-2,7").unwrap(), [0b1000_0111]);
        assert_eq!(range_to_bits("9").unwrap(), [0, 2]);
        assert!(range_to_bits("").is_err());
        assert!(range_to_bits("3-1").is_err());
        assert!(range_to_bits("x").is_err());
    }

    fn props_of(json: serde_json::Value, version: u32) -> (Vec<CgroupWrite>, Vec<Prop>) {
        let r: LinuxResources = serde_json::from_value(json).unwrap();
        let mut writes = resources::v2(&r, resources::V2Env::default()).unwrap();
        let p = resource_props(&mut writes, version).unwrap();
        (writes, p)
    }

    #[test]
    fn every_systemd_value_is_the_file_value() {
        let (_, p) = props_of(
            serde_json::json!({
                "memory": {"limit": 104857600, "swap": 209715200, "reservation": 52428800},
                "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
                "pids": {"limit": 32},
                "blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 100}],
                            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
                "unified": {"memory.high": "90000000"}
            }),
            252,
        );
        let want: Vec<Prop> = vec![
            ("MemorySwapMax", Value::U64(104857600)),
            ("MemoryMax", Value::U64(104857600)),
            ("MemoryLow", Value::U64(52428800)),
            ("CPUWeight", Value::U64(39)),
            ("CPUQuotaPeriodUSec", Value::U64(100000)),
            ("CPUQuotaPerSecUSec", Value::U64(500000)),
            ("AllowedCPUs", Value::Bytes(vec![3])),
            ("AllowedMemoryNodes", Value::Bytes(vec![1])),
            ("TasksMax", Value::U64(32)),
            ("IOWeight", Value::U64(4950)),
            (
                "IODeviceWeight",
                Value::DevU64s(vec![("/dev/block/8:0".into(), 910)]),
            ),
            (
                "IOReadBandwidthMax",
                Value::DevU64s(vec![("/dev/block/8:0".into(), 1048576)]),
            ),
            ("MemoryHigh", Value::U64(90000000)),
        ];
        assert_eq!(p, want);
    }

    #[test]
    fn unlimited_is_infinity_and_quota_rounds_up_in_both_views() {
        let (writes, p) = props_of(
            serde_json::json!({"memory": {"limit": -1}, "pids": {"limit": -1},
                               "cpu": {"quota": 12345, "period": 100000}}),
            252,
        );
        assert!(p.contains(&("MemoryMax", Value::U64(INFINITY))));
        assert!(p.contains(&("MemorySwapMax", Value::U64(INFINITY))));
        assert!(p.contains(&("TasksMax", Value::U64(INFINITY))));
        assert!(p.contains(&("CPUQuotaPerSecUSec", Value::U64(130000))));
        let cpu = writes.iter().find(|write| write.file == "cpu.max").unwrap();
        assert_eq!(cpu.value, "13000 100000");
        let (_, p) = props_of(
            serde_json::json!({"cpu": {"quota": -1, "period": 50000}}),
            241,
        );
        assert_eq!(p, vec![("CPUQuotaPerSecUSec", Value::U64(INFINITY))]);
    }

    #[test]
    fn old_systemd_gets_cpusets_in_the_files_only() {
        let (writes, p) = props_of(serde_json::json!({"cpu": {"cpus": "0"}}), 243);
        assert!(p.is_empty());
        assert_eq!(writes.len(), 1);
    }

    #[test]
    fn device_rules_in_systemd_form() {
        let rules = super::super::devices::effective_rules(&[], &[]);
        let p = device_props(&rules).unwrap();
        assert_eq!(p[1], ("DevicePolicy", Value::Str("strict".into())));
        let Value::StrPairs(allow) = &p[2].1 else {
            panic!("{p:?}")
        };
        for want in [
            ("char-*", "m"),
            ("block-*", "m"),
            ("/dev/char/1:3", "rwm"),
            ("char-136", "rwm"),
            ("/dev/char/10:200", "rwm"),
        ] {
            assert!(
                allow.contains(&(want.0.into(), want.1.into())),
                "{want:?} in {allow:?}"
            );
        }
        let all: LinuxDeviceCgroup =
            serde_json::from_value(serde_json::json!({"allow": true, "access": "rwm"})).unwrap();
        let p = device_props(&[all]).unwrap();
        assert_eq!(p[1], ("DevicePolicy", Value::Str("auto".into())));
        assert_eq!(p[2], ("DeviceAllow", Value::StrPairs(vec![])));
    }

    #[test]
    fn scope_props() {
        let u = UnitPath::parse(Some(":p:n"), "n", false).unwrap();
        let p = unit_props(&u, "n", Some(Pid::from_raw(42)));
        assert!(p.contains(&("Slice", Value::Str("system.slice".into()))));
        assert!(p.contains(&("Delegate", Value::Bool(true))));
        assert!(p.contains(&("PIDs", Value::U32s(vec![42]))));
        let s = UnitPath::parse(Some("a.slice:p:n.slice"), "n", false).unwrap();
        let p = unit_props(&s, "n", Some(Pid::from_raw(42)));
        assert!(p.contains(&("Wants", Value::Str("a.slice".into()))));
        assert!(!p.iter().any(|(n, _)| *n == "PIDs" || *n == "Delegate"));
    }
}
