//! `linux.resources` as cgroup file writes: pure translation, one function
//! per cgroup version, with the value checks and the v1 <-> v2 conversions
//! runc makes. The caller writes the result into the container's cgroup.

use std::collections::HashMap;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use crate::error::{Error, Result};

/// One file to write: the controller it belongs to (v1 subsystem name, or
/// the v2 controller, "" for cgroup core files), its name and value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupWrite {
    pub ctrl: &'static str,
    pub file: String,
    pub value: String,
}

fn write(ctrl: &'static str, file: impl Into<String>, value: impl ToString) -> CgroupWrite {
    CgroupWrite {
        ctrl,
        file: file.into(),
        value: value.to_string(),
    }
}

fn invalid(msg: String) -> Error {
    Error::Cgroup(msg)
}

/// Checks what is wrong whatever the cgroup version.
pub fn validate(r: &LinuxResources) -> Result<()> {
    if let Some(m) = r.memory() {
        validate_memory(m)?;
    }
    if let Some(c) = r.cpu() {
        validate_cpu(c)?;
    }
    if let Some(p) = r.pids()
        && p.limit() < -1
    {
        return Err(invalid(format!(
            "invalid pids.limit {}: must be -1 or >= 0",
            p.limit()
        )));
    }
    if let Some(b) = r.block_io() {
        validate_block_io(b)?;
    }
    for h in r.hugepage_limits().iter().flatten() {
        page_size(h.page_size())?;
        if h.limit() < -1 {
            return Err(invalid(format!(
                "invalid hugepageLimits {} limit {}: must be -1 or >= 0",
                h.page_size(),
                h.limit()
            )));
        }
    }
    for (k, _) in r.unified().iter().flatten() {
        unified_ctrl(k)?;
    }
    Ok(())
}

fn validate_memory(m: &LinuxMemory) -> Result<()> {
    for (name, v) in [
        ("memory.limit", m.limit()),
        ("memory.reservation", m.reservation()),
        ("memory.swap", m.swap()),
        ("memory.kernel", m.kernel()),
        ("memory.kernelTCP", m.kernel_tcp()),
    ] {
        if let Some(v) = v
            && v < -1
        {
            return Err(invalid(format!("invalid {name} {v}: must be -1 or >= 0")));
        }
    }
    if let Some(s) = m.swappiness()
        && s > 100
    {
        return Err(invalid(format!(
            "invalid memory.swappiness {s}: must be 0 to 100"
        )));
    }
    if let (Some(limit), Some(swap)) = (m.limit(), m.swap())
        && limit > 0
        && swap > 0
        && swap < limit
    {
        return Err(invalid(format!(
            "invalid memory.swap {swap}: memory+swap must be >= memory.limit {limit}"
        )));
    }
    Ok(())
}

fn validate_cpu(c: &LinuxCpu) -> Result<()> {
    if let Some(q) = c.quota()
        && q < -1
    {
        return Err(invalid(format!(
            "invalid cpu.quota {q}: must be -1 or >= 0"
        )));
    }
    if let Some(p) = c.period()
        && p != 0
        && !(1000..=1_000_000).contains(&p)
    {
        return Err(invalid(format!(
            "invalid cpu.period {p}: must be 1000 to 1000000 microseconds"
        )));
    }
    if let Some(i) = c.idle()
        && !(0..=1).contains(&i)
    {
        return Err(invalid(format!("invalid cpu.idle {i}: must be 0 or 1")));
    }
    if let Some(s) = c.cpus() {
        check_list("cpu.cpus", s)?;
    }
    if let Some(s) = c.mems() {
        check_list("cpu.mems", s)?;
    }
    Ok(())
}

fn validate_block_io(b: &LinuxBlockIo) -> Result<()> {
    for (name, v) in [
        ("blockIO.weight", b.weight()),
        ("blockIO.leafWeight", b.leaf_weight()),
    ] {
        if let Some(v) = v
            && v != 0
            && !(10..=1000).contains(&v)
        {
            return Err(invalid(format!("invalid {name} {v}: must be 10 to 1000")));
        }
    }
    for d in b.weight_device().iter().flatten() {
        check_dev("blockIO.weightDevice", d.major(), d.minor())?;
        for v in [d.weight(), d.leaf_weight()].into_iter().flatten() {
            if !(10..=1000).contains(&v) {
                return Err(invalid(format!(
                    "invalid blockIO.weightDevice {}:{} weight {v}: must be 10 to 1000",
                    d.major(),
                    d.minor()
                )));
            }
        }
    }
    for (name, list) in throttles(b) {
        for d in list {
            check_dev(name, d.major(), d.minor())?;
        }
    }
    Ok(())
}

fn check_dev(name: &str, major: i64, minor: i64) -> Result<()> {
    if major < 0 || minor < 0 {
        return Err(invalid(format!(
            "invalid {name} device {major}:{minor}: major and minor must be >= 0"
        )));
    }
    Ok(())
}

type Throttles<'a> = [(&'static str, &'a [oci_spec::runtime::LinuxThrottleDevice]); 4];

fn or_empty(
    v: &Option<Vec<oci_spec::runtime::LinuxThrottleDevice>>,
) -> &[oci_spec::runtime::LinuxThrottleDevice] {
    v.as_deref().unwrap_or(&[])
}

fn throttles(b: &LinuxBlockIo) -> Throttles<'_> {
    [
        (
            "blockIO.throttleReadBpsDevice",
            or_empty(b.throttle_read_bps_device()),
        ),
        (
            "blockIO.throttleWriteBpsDevice",
            or_empty(b.throttle_write_bps_device()),
        ),
        (
            "blockIO.throttleReadIOPSDevice",
            or_empty(b.throttle_read_iops_device()),
        ),
        (
            "blockIO.throttleWriteIOPSDevice",
            or_empty(b.throttle_write_iops_device()),
        ),
    ]
}

/// A cpuset list: "0-3,5,7-8" (empty is allowed: inherit).
pub fn check_list(name: &str, s: &str) -> Result<()> {
    let err = || invalid(format!("invalid {name} {s:?}: not a list like \"0-3,5\""));
    if s.trim().is_empty() {
        return Ok(());
    }
    for part in s.trim().split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: u32 = a.parse().map_err(|_| err())?;
        let b: u32 = b.parse().map_err(|_| err())?;
        if a > b {
            return Err(err());
        }
    }
    Ok(())
}

/// "2MB", "1GB", "64KB": the size as the kernel names hugetlb files.
fn page_size(s: &str) -> Result<&str> {
    let ok = s.len() > 2
        && ["KB", "MB", "GB"].iter().any(|u| s.ends_with(u))
        && s[..s.len() - 2].chars().all(|c| c.is_ascii_digit());
    if !ok {
        return Err(invalid(format!(
            "invalid hugepageLimits pageSize {s:?}: expected e.g. \"2MB\""
        )));
    }
    Ok(s)
}

/// The controller a unified key belongs to ("" for cgroup core files).
fn unified_ctrl(key: &str) -> Result<&str> {
    let (ctrl, rest) = key.split_once('.').unwrap_or(("", ""));
    if ctrl.is_empty()
        || rest.is_empty()
        || key.contains('/')
        || key.contains("..")
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
    {
        return Err(invalid(format!(
            "invalid unified key {key:?}: expected <controller>.<file>"
        )));
    }
    Ok(if ctrl == "cgroup" { "" } else { ctrl })
}

/// runc's shares (2..262144) -> cpu.weight (1..10000); 0 stays unset.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// blkio.weight (10..1000) -> io.weight (1..10000); 0 stays unset.
pub fn blkio_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    1 + (u64::from(weight).clamp(10, 1000) - 10) * 9999 / 990
}

/// memory+swap (v1 semantics) -> memory.swap.max (v2: swap alone), as runc.
/// None: leave unset.
pub fn swap_to_v2(swap: i64, limit: i64) -> Result<Option<String>> {
    if limit == -1 && swap == 0 {
        return Ok(Some("max".into()));
    }
    match swap {
        0 => Ok(None),
        -1 => Ok(Some("max".into())),
        s => {
            if limit <= 0 {
                return Err(invalid(format!(
                    "invalid memory.swap {s}: a swap limit needs a memory limit"
                )));
            }
            if s < limit {
                return Err(invalid(format!(
                    "invalid memory.swap {s}: memory+swap must be >= memory.limit {limit}"
                )));
            }
            Ok(Some((s - limit).to_string()))
        }
    }
}

fn max_or(v: i64) -> String {
    if v < 0 { "max".into() } else { v.to_string() }
}

/// The writes for a cgroup v1 container.
pub fn v1(r: &LinuxResources) -> Result<Vec<CgroupWrite>> {
    validate(r)?;
    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(invalid(
            "linux.resources.unified needs cgroup v2, but this host's controllers are cgroup v1"
                .into(),
        ));
    }
    let mut out = Vec::new();
    if let Some(m) = r.memory() {
        v1_memory(m, &mut out);
    }
    if let Some(c) = r.cpu() {
        v1_cpu(c, &mut out);
    }
    if let Some(p) = r.pids()
        && p.limit() != 0
    {
        out.push(write("pids", "pids.max", max_or(p.limit())));
    }
    if let Some(b) = r.block_io() {
        if let Some(v) = b.weight().filter(|v| *v != 0) {
            out.push(write("blkio", "blkio.weight", v));
        }
        if let Some(v) = b.leaf_weight().filter(|v| *v != 0) {
            out.push(write("blkio", "blkio.leaf_weight", v));
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(v) = d.weight() {
                let line = format!("{}:{} {v}", d.major(), d.minor());
                out.push(write("blkio", "blkio.weight_device", line));
            }
            if let Some(v) = d.leaf_weight() {
                let line = format!("{}:{} {v}", d.major(), d.minor());
                out.push(write("blkio", "blkio.leaf_weight_device", line));
            }
        }
        let files = [
            "blkio.throttle.read_bps_device",
            "blkio.throttle.write_bps_device",
            "blkio.throttle.read_iops_device",
            "blkio.throttle.write_iops_device",
        ];
        for ((_, list), file) in throttles(b).into_iter().zip(files) {
            for d in list {
                out.push(write(
                    "blkio",
                    file,
                    format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                ));
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        let size = page_size(h.page_size())?;
        out.push(write(
            "hugetlb",
            format!("hugetlb.{size}.limit_in_bytes"),
            h.limit(),
        ));
    }
    if let Some(n) = r.network() {
        if let Some(id) = n.class_id() {
            out.push(write("net_cls", "net_cls.classid", id));
        }
        for p in n.priorities().iter().flatten() {
            out.push(write(
                "net_prio",
                "net_prio.ifpriomap",
                format!("{} {}", p.name(), p.priority()),
            ));
        }
    }
    out.extend(rdma(r.rdma()));
    Ok(out)
}

fn v1_memory(m: &LinuxMemory, out: &mut Vec<CgroupWrite>) {
    let limit = m.limit().unwrap_or(0);
    // Unlimited memory and no swap setting: swap unlimited too (as runc).
    let swap = match m.swap().unwrap_or(0) {
        0 if limit == -1 => -1,
        s => s,
    };
    if limit != 0 {
        out.push(write("memory", "memory.limit_in_bytes", limit));
    }
    if swap != 0 {
        out.push(write("memory", "memory.memsw.limit_in_bytes", swap));
    }
    if let Some(v) = m.reservation().filter(|v| *v != 0) {
        out.push(write("memory", "memory.soft_limit_in_bytes", v));
    }
    if let Some(v) = m.kernel_tcp().filter(|v| *v != 0) {
        out.push(write("memory", "memory.kmem.tcp.limit_in_bytes", v));
    }
    if let Some(v) = m.swappiness() {
        out.push(write("memory", "memory.swappiness", v));
    }
    if m.disable_oom_killer() == Some(true) {
        out.push(write("memory", "memory.oom_control", 1));
    }
    if m.use_hierarchy() == Some(true) {
        out.push(write("memory", "memory.use_hierarchy", 1));
    }
}

fn v1_cpu(c: &LinuxCpu, out: &mut Vec<CgroupWrite>) {
    if let Some(v) = c.shares().filter(|v| *v != 0) {
        out.push(write("cpu", "cpu.shares", v));
    }
    // Period before quota: a quota is checked against the current period.
    if let Some(v) = c.period().filter(|v| *v != 0) {
        out.push(write("cpu", "cpu.cfs_period_us", v));
    }
    if let Some(v) = c.quota().filter(|v| *v != 0) {
        out.push(write("cpu", "cpu.cfs_quota_us", v));
    }
    if let Some(v) = c.burst() {
        out.push(write("cpu", "cpu.cfs_burst_us", v));
    }
    if let Some(v) = c.realtime_period().filter(|v| *v != 0) {
        out.push(write("cpu", "cpu.rt_period_us", v));
    }
    if let Some(v) = c.realtime_runtime().filter(|v| *v != 0) {
        out.push(write("cpu", "cpu.rt_runtime_us", v));
    }
    if let Some(v) = c.idle() {
        out.push(write("cpu", "cpu.idle", v));
    }
    if let Some(s) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        out.push(write("cpuset", "cpuset.cpus", s));
    }
    if let Some(s) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        out.push(write("cpuset", "cpuset.mems", s));
    }
}

fn rdma(r: &Option<HashMap<String, oci_spec::runtime::LinuxRdma>>) -> Vec<CgroupWrite> {
    let mut devs: Vec<_> = r.iter().flatten().collect();
    devs.sort_by(|a, b| a.0.cmp(b.0));
    devs.into_iter()
        .map(|(dev, limit)| {
            let v = |x: Option<u32>| x.map_or("max".to_string(), |n| n.to_string());
            write(
                "rdma",
                "rdma.max",
                format!(
                    "{dev} hca_handle={} hca_object={}",
                    v(limit.hca_handles()),
                    v(limit.hca_objects())
                ),
            )
        })
        .collect()
}

/// What the v2 translation needs to know about the cgroup: whether io is
/// handled by BFQ (`io.bfq.weight` exists).
#[derive(Default, Clone, Copy)]
pub struct V2Env {
    pub bfq: bool,
}

/// The writes for a cgroup v2 container. `unified` keys come last and win
/// over the same file from the typed fields (as runc).
pub fn v2(r: &LinuxResources, env: V2Env) -> Result<Vec<CgroupWrite>> {
    validate(r)?;
    let mut out = Vec::new();
    if let Some(m) = r.memory() {
        v2_memory(m, &mut out)?;
    }
    if let Some(c) = r.cpu() {
        v2_cpu(c, &mut out)?;
    }
    if let Some(p) = r.pids()
        && p.limit() != 0
    {
        out.push(write("pids", "pids.max", max_or(p.limit())));
    }
    if let Some(b) = r.block_io() {
        v2_io(b, env, &mut out);
    }
    for h in r.hugepage_limits().iter().flatten() {
        let size = page_size(h.page_size())?;
        out.push(write(
            "hugetlb",
            format!("hugetlb.{size}.max"),
            max_or(h.limit()),
        ));
    }
    out.extend(rdma(r.rdma()));
    if r.network()
        .as_ref()
        .is_some_and(|n| n.class_id().is_some() || n.priorities().is_some())
    {
        // cgroup v2 has no net_cls/net_prio (eBPF took their place); runc
        // ignores the field there too. Said in the log, not silently.
        crate::logging::log(
            "warning",
            "linux.resources.network (classID, priorities) has no cgroup v2 controller: ignored",
        );
    }
    v2_unified(r, &mut out)?;
    Ok(out)
}

fn v2_memory(m: &LinuxMemory, out: &mut Vec<CgroupWrite>) -> Result<()> {
    let limit = m.limit().unwrap_or(0);
    if let Some(s) = swap_to_v2(m.swap().unwrap_or(0), limit)? {
        out.push(write("memory", "memory.swap.max", s));
    }
    if limit != 0 {
        out.push(write("memory", "memory.max", max_or(limit)));
    }
    if let Some(v) = m.reservation().filter(|v| *v != 0) {
        out.push(write("memory", "memory.low", max_or(v)));
    }
    Ok(())
}

fn v2_cpu(c: &LinuxCpu, out: &mut Vec<CgroupWrite>) -> Result<()> {
    if c.realtime_period().unwrap_or(0) != 0 || c.realtime_runtime().unwrap_or(0) != 0 {
        return Err(invalid(
            "cpu.realtimePeriod/realtimeRuntime are not supported on cgroup v2".into(),
        ));
    }
    let weight = shares_to_weight(c.shares().unwrap_or(0));
    if weight != 0 {
        out.push(write("cpu", "cpu.weight", weight));
    }
    let quota = c.quota().unwrap_or(0);
    let period = c.period().unwrap_or(0);
    if quota != 0 || period != 0 {
        let quota = if quota > 0 {
            quota.to_string()
        } else {
            "max".into()
        };
        let value = if period != 0 {
            format!("{quota} {period}")
        } else {
            quota
        };
        out.push(write("cpu", "cpu.max", value));
    }
    if let Some(b) = c.burst() {
        out.push(write("cpu", "cpu.max.burst", b));
    }
    if let Some(i) = c.idle() {
        out.push(write("cpu", "cpu.idle", i));
    }
    if let Some(s) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        out.push(write("cpuset", "cpuset.cpus", s));
    }
    if let Some(s) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        out.push(write("cpuset", "cpuset.mems", s));
    }
    Ok(())
}

/// blockIO as io.weight (io.bfq.weight under BFQ) and io.max.
fn v2_io(b: &LinuxBlockIo, env: V2Env, out: &mut Vec<CgroupWrite>) {
    if let Some(v) = b.weight().filter(|v| *v != 0) {
        if env.bfq {
            out.push(write("io", "io.bfq.weight", v));
        } else {
            out.push(write("io", "io.weight", blkio_to_io_weight(v)));
        }
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(v) = d.weight() {
            let line = format!("{}:{} {v}", d.major(), d.minor());
            if env.bfq {
                out.push(write("io", "io.bfq.weight", line));
            } else {
                let line = format!("{}:{} {}", d.major(), d.minor(), blkio_to_io_weight(v));
                out.push(write("io", "io.weight", line));
            }
        }
    }
    for ((_, list), key) in throttles(b)
        .into_iter()
        .zip(["rbps", "wbps", "riops", "wiops"])
    {
        for d in list {
            out.push(write(
                "io",
                "io.max",
                format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()),
            ));
        }
    }
}

/// The `unified` keys, sorted, each replacing a typed field's write of
/// the same file.
fn v2_unified(r: &LinuxResources, out: &mut Vec<CgroupWrite>) -> Result<()> {
    let mut unified: Vec<_> = r.unified().iter().flatten().collect();
    unified.sort();
    for (k, v) in unified {
        let ctrl = unified_ctrl(k)?;
        // A 'static name for the write: the controllers the kernel knows.
        let ctrl = KNOWN_V2
            .iter()
            .find(|c| **c == ctrl)
            .copied()
            .ok_or_else(|| {
                invalid(format!(
                    "invalid unified key {k:?}: {ctrl:?} is not a cgroup v2 controller"
                ))
            })?;
        out.retain(|x| x.file != *k);
        out.push(write(ctrl, k.clone(), v));
    }
    Ok(())
}

/// cgroup v2 controllers ("" for core `cgroup.*` files).
pub const KNOWN_V2: &[&str] = &[
    "",
    "cpu",
    "cpuset",
    "io",
    "memory",
    "pids",
    "hugetlb",
    "rdma",
    "misc",
    "perf_event",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn res(v: serde_json::Value) -> LinuxResources {
        serde_json::from_value(v).unwrap()
    }

    fn files(writes: &[CgroupWrite]) -> Vec<(String, String)> {
        writes
            .iter()
            .map(|write| (write.file.clone(), write.value.clone()))
            .collect()
    }

    #[test]
    fn conversions_match_runc() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10000);
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10000);
        assert_eq!(blkio_to_io_weight(500), 4950);
        assert_eq!(swap_to_v2(0, -1).unwrap().as_deref(), Some("max"));
        assert_eq!(swap_to_v2(-1, 100).unwrap().as_deref(), Some("max"));
        assert_eq!(swap_to_v2(300, 100).unwrap().as_deref(), Some("200"));
        assert_eq!(swap_to_v2(0, 100).unwrap(), None);
        assert!(swap_to_v2(50, 100).is_err());
        assert!(swap_to_v2(50, 0).is_err());
    }

    #[test]
    fn v1_and_v2_for_the_same_resources() {
        let r = res(serde_json::json!({
            "memory": {"limit": 104857600, "swap": 209715200, "reservation": 52428800},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
            "pids": {"limit": 32},
            "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]
        }));
        let v1 = files(&v1(&r).unwrap());
        let want1 = [
            ("memory.limit_in_bytes", "104857600"),
            ("memory.memsw.limit_in_bytes", "209715200"),
            ("memory.soft_limit_in_bytes", "52428800"),
            ("cpu.shares", "1024"),
            ("cpu.cfs_period_us", "100000"),
            ("cpu.cfs_quota_us", "50000"),
            ("cpuset.cpus", "0"),
            ("cpuset.mems", "0"),
            ("pids.max", "32"),
            ("blkio.weight", "500"),
            ("blkio.throttle.read_bps_device", "8:0 1048576"),
            ("hugetlb.2MB.limit_in_bytes", "4194304"),
        ];
        assert_eq!(
            v1,
            want1.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
        );
        let v2 = files(&v2(&r, V2Env::default()).unwrap());
        let want2 = [
            ("memory.swap.max", "104857600"),
            ("memory.max", "104857600"),
            ("memory.low", "52428800"),
            ("cpu.weight", "39"),
            ("cpu.max", "50000 100000"),
            ("cpuset.cpus", "0"),
            ("cpuset.mems", "0"),
            ("pids.max", "32"),
            ("io.weight", "4950"),
            ("io.max", "8:0 rbps=1048576"),
            ("hugetlb.2MB.max", "4194304"),
        ];
        assert_eq!(
            v2,
            want2.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
        );
    }

    #[test]
    fn unlimited_values() {
        let r = res(
            serde_json::json!({"memory": {"limit": -1}, "pids": {"limit": -1}, "cpu": {"quota": -1}}),
        );
        assert_eq!(
            files(&v2(&r, V2Env::default()).unwrap()),
            [
                ("memory.swap.max", "max"),
                ("memory.max", "max"),
                ("cpu.max", "max"),
                ("pids.max", "max")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(
            files(&v1(&r).unwrap()),
            [
                ("memory.limit_in_bytes", "-1"),
                ("memory.memsw.limit_in_bytes", "-1"),
                ("cpu.cfs_quota_us", "-1"),
                ("pids.max", "max")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    #[test]
    fn unified_keys_win_and_are_checked() {
        let r = res(
            serde_json::json!({"pids": {"limit": 5}, "unified": {"pids.max": "7", "memory.high": "1000000"}}),
        );
        let ws = files(&v2(&r, V2Env::default()).unwrap());
        assert_eq!(
            ws,
            [("memory.high", "1000000"), ("pids.max", "7")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert!(v1(&r).is_err(), "unified on v1 must fail");
        for k in ["../etc/passwd", "nodot", "memory/../x", "bogus.max", ".max"] {
            let r = res(serde_json::json!({"unified": {k: "1"}}));
            assert!(v2(&r, V2Env::default()).is_err(), "{k} accepted");
        }
    }

    #[test]
    fn bad_values_are_refused() {
        for v in [
            serde_json::json!({"memory": {"limit": -5}}),
            serde_json::json!({"memory": {"swappiness": 101}}),
            serde_json::json!({"memory": {"limit": 100, "swap": 50}}),
            serde_json::json!({"cpu": {"cpus": "0-"}}),
            serde_json::json!({"cpu": {"cpus": "3-1"}}),
            serde_json::json!({"cpu": {"mems": "a"}}),
            serde_json::json!({"cpu": {"quota": -2}}),
            serde_json::json!({"cpu": {"period": 10}}),
            serde_json::json!({"pids": {"limit": -2}}),
            serde_json::json!({"blockIO": {"weight": 5}}),
            serde_json::json!({"hugepageLimits": [{"pageSize": "2XB", "limit": 1}]}),
        ] {
            assert!(validate(&res(v.clone())).is_err(), "{v} accepted");
        }
        assert!(check_list("c", "0-3,5,7-8").is_ok());
        assert!(check_list("c", "").is_ok());
    }

    #[test]
    fn realtime_is_v1_only() {
        let r = res(serde_json::json!({"cpu": {"realtimeRuntime": 1000, "realtimePeriod": 10000}}));
        assert!(v2(&r, V2Env::default()).is_err());
        assert_eq!(v1(&r).unwrap().len(), 2);
    }
}
