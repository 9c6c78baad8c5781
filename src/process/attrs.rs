//! Per-process attributes of runtime-spec 1.3: `linux.personality`,
//! `linux.memoryPolicy`, `process.ioPriority`, `process.scheduler` and
//! `process.execCPUAffinity`.
//!
//! `validate` checks them on the raw JSON, before oci-spec's types see it, so
//! an unknown class, policy, mode, flag or domain fails with the field and
//! value named (serde would only say "unknown variant" and a column).
//! `normalize` then rewrites the scheduler flags into the spelling oci-spec
//! 0.10 deserializes (it reads `SCHED_RESET_ON_FORK` and
//! `SCHED_FLAG_D_L_OVERRUN` where the spec says `SCHED_FLAG_RESET_ON_FORK` and
//! `SCHED_FLAG_DL_OVERRUN`). `apply` sets them in the container's process
//! (init or exec) after everything else and before seccomp and the user
//! switch; execCPUAffinity applies to `exec` only (the spec: "not applicable
//! to the container's init process").

use nix::sched::CpuSet;
use nix::unistd::Pid;
use oci_spec::runtime::{
    IOPriorityClass, Linux, LinuxMemoryPolicy, LinuxPersonalityDomain, LinuxSchedulerFlag,
    LinuxSchedulerPolicy, MemoryPolicyFlagType, MemoryPolicyModeType, Process, Scheduler,
};
use serde_json::Value;

use crate::error::{Context, Error, Result};
use crate::sys::sched::{self as sys, SchedAttr};

const IOPRIO_CLASSES: &[(&str, i32)] = &[
    ("IOPRIO_CLASS_RT", 1),
    ("IOPRIO_CLASS_BE", 2),
    ("IOPRIO_CLASS_IDLE", 3),
];

const SCHED_POLICIES: &[(&str, u32)] = &[
    ("SCHED_OTHER", 0),
    ("SCHED_FIFO", 1),
    ("SCHED_RR", 2),
    ("SCHED_BATCH", 3),
    ("SCHED_ISO", 4),
    ("SCHED_IDLE", 5),
    ("SCHED_DEADLINE", 6),
];

/// The spec's flag names, the kernel's values, and oci-spec 0.10's spelling.
const SCHED_FLAGS: &[(&str, u64, &str)] = &[
    ("SCHED_FLAG_RESET_ON_FORK", 0x01, "SCHED_RESET_ON_FORK"),
    ("SCHED_FLAG_RECLAIM", 0x02, "SCHED_FLAG_RECLAIM"),
    ("SCHED_FLAG_DL_OVERRUN", 0x04, "SCHED_FLAG_D_L_OVERRUN"),
    ("SCHED_FLAG_KEEP_POLICY", 0x08, "SCHED_FLAG_KEEP_POLICY"),
    ("SCHED_FLAG_KEEP_PARAMS", 0x10, "SCHED_FLAG_KEEP_PARAMS"),
    (
        "SCHED_FLAG_UTIL_CLAMP_MIN",
        0x20,
        "SCHED_FLAG_UTIL_CLAMP_MIN",
    ),
    (
        "SCHED_FLAG_UTIL_CLAMP_MAX",
        0x40,
        "SCHED_FLAG_UTIL_CLAMP_MAX",
    ),
];

const MPOL_MODES: &[(&str, i32)] = &[
    ("MPOL_DEFAULT", 0),
    ("MPOL_PREFERRED", 1),
    ("MPOL_BIND", 2),
    ("MPOL_INTERLEAVE", 3),
    ("MPOL_LOCAL", 4),
    ("MPOL_PREFERRED_MANY", 5),
    ("MPOL_WEIGHTED_INTERLEAVE", 6),
];

const MPOL_FLAGS: &[(&str, i32)] = &[
    ("MPOL_F_NUMA_BALANCING", 1 << 13),
    ("MPOL_F_RELATIVE_NODES", 1 << 14),
    ("MPOL_F_STATIC_NODES", 1 << 15),
];

const PERSONALITY_DOMAINS: &[(&str, libc::c_ulong)] = &[("LINUX", 0x0000), ("LINUX32", 0x0008)];

/// CPU_SETSIZE: the most CPUs an affinity mask can name.
const MAX_CPUS: u32 = 1024;
/// MAX_NUMNODES of the largest kernel configuration (NODES_SHIFT 10).
const MAX_NODES: u32 = 1024;

fn spec_err(msg: String) -> Error {
    Error::Spec(msg)
}

fn lookup<T: Copy>(table: &[(&str, T)], field: &str, v: &Value) -> Result<T> {
    let s = v
        .as_str()
        .ok_or_else(|| spec_err(format!("{field} {v} is not a string")))?;
    table
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, x)| *x)
        .ok_or_else(|| spec_err(format!("{field} {s} is not supported")))
}

fn required<'a>(obj: &'a Value, field: &str, key: &str) -> Result<&'a Value> {
    obj.get(key)
        .filter(|v| !v.is_null())
        .ok_or_else(|| spec_err(format!("{field}.{key} is required")))
}

fn int_in(v: &Value, field: &str, lo: i64, hi: i64) -> Result<i64> {
    match v.as_i64() {
        Some(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(spec_err(format!(
            "{field} {v} is out of range (an integer from {lo} to {hi})"
        ))),
    }
}

fn array<'a>(v: &'a Value, field: &str) -> Result<&'a [Value]> {
    v.as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| spec_err(format!("{field} {v} is not an array")))
}

/// A list such as `0-3,7` (CPUs or memory nodes), each below `max`.
pub(crate) fn parse_list(field: &str, s: &str, max: u32) -> Result<Vec<u32>> {
    let not_a_list = || spec_err(format!("{field} {s:?} is not a list such as \"0-3,7\""));
    let mut out = Vec::new();
    for part in s.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let num = |t: &str| -> Result<u32> {
            if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
                return Err(not_a_list());
            }
            t.parse().map_err(|_| not_a_list())
        };
        let (a, b) = (num(a)?, num(b)?);
        if a > b {
            return Err(not_a_list());
        }
        if b >= max {
            return Err(spec_err(format!("{field} {s:?}: {b} is not below {max}")));
        }
        out.extend(a..=b);
    }
    Ok(out)
}

/// Checks the attributes of one process object (`process`, or an `exec
/// --process` file): every value must be one we can set.
pub(crate) fn validate_process(p: &Value) -> Result<()> {
    if let Some(io) = p.get("ioPriority").filter(|v| !v.is_null()) {
        let f = "process.ioPriority";
        lookup(
            IOPRIO_CLASSES,
            &format!("{f}.class"),
            required(io, f, "class")?,
        )?;
        int_in(required(io, f, "priority")?, &format!("{f}.priority"), 0, 7)?;
    }
    if let Some(s) = p.get("scheduler").filter(|v| !v.is_null()) {
        validate_scheduler(s)?;
    }
    if let Some(a) = p.get("execCPUAffinity").filter(|v| !v.is_null()) {
        for key in ["initial", "final"] {
            let field = format!("process.execCPUAffinity.{key}");
            match a.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) if s.is_empty() => {}
                Some(Value::String(s)) => drop(parse_list(&field, s, MAX_CPUS)?),
                Some(v) => return Err(spec_err(format!("{field} {v} is not a string"))),
            }
        }
    }
    Ok(())
}

fn validate_scheduler(s: &Value) -> Result<()> {
    let f = "process.scheduler";
    let policy_v = required(s, f, "policy")?;
    let policy = lookup(SCHED_POLICIES, &format!("{f}.policy"), policy_v)?;
    let name = policy_v.as_str().unwrap_or_default();
    if policy == 4 {
        return Err(spec_err(format!(
            "{f}.policy SCHED_ISO is not supported: Linux has no such policy"
        )));
    }
    if let Some(n) = s.get("nice").filter(|v| !v.is_null()) {
        int_in(n, &format!("{f}.nice"), -20, 19)?;
    }
    if let Some(p) = s.get("priority").filter(|v| !v.is_null()) {
        let field = format!("{f}.priority");
        match policy {
            1 | 2 => drop(int_in(p, &field, 1, 99)?),
            _ if p.as_i64() == Some(0) => {}
            _ => {
                return Err(spec_err(format!(
                    "{field} {p} is not valid with {name}: only SCHED_FIFO and SCHED_RR have a priority (1 to 99)"
                )));
            }
        }
    } else if policy == 1 || policy == 2 {
        return Err(spec_err(format!(
            "{f}.priority is required with {name} (1 to 99)"
        )));
    }
    for key in ["runtime", "deadline", "period"] {
        let Some(v) = s.get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        if v.as_u64().is_none() {
            return Err(spec_err(format!(
                "{f}.{key} {v} is not an unsigned integer"
            )));
        }
        if policy != 6 && v.as_u64() != Some(0) {
            return Err(spec_err(format!(
                "{f}.{key} {v} is only valid with SCHED_DEADLINE, not {name}"
            )));
        }
    }
    if let Some(flags) = s.get("flags").filter(|v| !v.is_null()) {
        let field = format!("{f}.flags");
        for fl in array(flags, &field)? {
            let s = fl.as_str().unwrap_or_default();
            if !SCHED_FLAGS.iter().any(|(n, _, _)| *n == s) {
                return Err(spec_err(format!("{field} {fl} is not supported")));
            }
        }
    }
    Ok(())
}

/// Checks `linux.personality` and `linux.memoryPolicy`.
pub(crate) fn validate_linux(linux: &Value) -> Result<()> {
    if let Some(p) = linux.get("personality").filter(|v| !v.is_null()) {
        let f = "linux.personality";
        lookup(
            PERSONALITY_DOMAINS,
            &format!("{f}.domain"),
            required(p, f, "domain")?,
        )?;
        if let Some(flags) = p.get("flags").filter(|v| !v.is_null()) {
            // The spec defines no flag values yet.
            if let Some(fl) = array(flags, &format!("{f}.flags"))?.first() {
                return Err(spec_err(format!("{f}.flags {fl} is not supported")));
            }
        }
    }
    if let Some(m) = linux.get("memoryPolicy").filter(|v| !v.is_null()) {
        let f = "linux.memoryPolicy";
        let mode_v = required(m, f, "mode")?;
        let mode = lookup(MPOL_MODES, &format!("{f}.mode"), mode_v)?;
        let name = mode_v.as_str().unwrap_or_default();
        let nodes = match m.get("nodes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) if s.is_empty() => Vec::new(),
            Some(Value::String(s)) => parse_list(&format!("{f}.nodes"), s, MAX_NODES)?,
            Some(v) => return Err(spec_err(format!("{f}.nodes {v} is not a string"))),
        };
        match mode {
            0 | 4 if !nodes.is_empty() => {
                return Err(spec_err(format!("{f}.nodes must be empty with {name}")));
            }
            2 | 3 | 5 | 6 if nodes.is_empty() => {
                return Err(spec_err(format!("{f}.nodes must name a node with {name}")));
            }
            _ => {}
        }
        let mut bits = 0;
        if let Some(flags) = m.get("flags").filter(|v| !v.is_null()) {
            for fl in array(flags, &format!("{f}.flags"))? {
                bits |= lookup(MPOL_FLAGS, &format!("{f}.flags"), fl)?;
            }
        }
        if bits & (3 << 14) == 3 << 14 {
            return Err(spec_err(format!(
                "{f}.flags: MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other"
            )));
        }
        if mode == 0 && bits != 0 {
            return Err(spec_err(format!(
                "{f}.flags must be empty with MPOL_DEFAULT"
            )));
        }
    }
    Ok(())
}

/// Rewrites `process.scheduler.flags` into oci-spec 0.10's spelling (see the
/// module doc). Run after `validate_process`.
pub(crate) fn normalize_process(p: &mut Value) {
    let Some(flags) = p
        .get_mut("scheduler")
        .and_then(|s| s.get_mut("flags"))
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for fl in flags {
        if let Some((_, _, theirs)) = SCHED_FLAGS.iter().find(|(n, _, _)| fl == *n) {
            *fl = Value::from(*theirs);
        }
    }
}

fn ioprio(class: IOPriorityClass, priority: i64) -> i32 {
    let class = match class {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    (class << 13) | (priority as i32 & 0x1fff)
}

fn sched_attr(s: &Scheduler) -> SchedAttr {
    use LinuxSchedulerPolicy as P;
    let policy = match s.policy() {
        P::SchedOther => 0,
        P::SchedFifo => 1,
        P::SchedRr => 2,
        P::SchedBatch => 3,
        P::SchedIso => 4,
        P::SchedIdle => 5,
        P::SchedDeadline => 6,
    };
    let flags = s
        .flags()
        .iter()
        .flatten()
        .map(|f| match f {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
            LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
        })
        .fold(0, |a, b| a | b);
    SchedAttr {
        policy,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
        ..Default::default()
    }
}

fn persona(d: LinuxPersonalityDomain) -> libc::c_ulong {
    match d {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    }
}

/// set_mempolicy's arguments: mode with its flags, the node mask and maxnode.
fn mempolicy(m: &LinuxMemoryPolicy) -> Result<(i32, Vec<libc::c_ulong>, u64)> {
    use MemoryPolicyModeType as M;
    let mut mode = match m.mode() {
        M::MpolDefault => 0,
        M::MpolPreferred => 1,
        M::MpolBind => 2,
        M::MpolInterleave => 3,
        M::MpolLocal => 4,
        M::MpolPreferredMany => 5,
        M::MpolWeightedInterleave => 6,
    };
    for f in m.flags().iter().flatten() {
        mode |= match f {
            MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
            MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
            MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
        };
    }
    let nodes = match m.nodes().as_deref() {
        None | Some("") => Vec::new(),
        Some(s) => parse_list("linux.memoryPolicy.nodes", s, MAX_NODES)?,
    };
    let Some(&top) = nodes.iter().max() else {
        return Ok((mode, Vec::new(), 0));
    };
    let word = libc::c_ulong::BITS;
    let mut mask = vec![0 as libc::c_ulong; (top / word + 1) as usize];
    for n in nodes {
        mask[(n / word) as usize] |= 1 << (n % word);
    }
    // The kernel reads maxnode - 1 bits.
    Ok((mode, mask, u64::from(top) + 2))
}

fn cpu_set(field: &str, list: &str) -> Result<CpuSet> {
    let mut set = CpuSet::new();
    for cpu in parse_list(field, list, MAX_CPUS)? {
        set.set(cpu as usize)
            .map_err(|_| spec_err(format!("{field} {list:?}: cpu {cpu} is out of range")))?;
    }
    Ok(set)
}

fn set_affinity(field: &str, list: &str, pid: Pid) -> Result<()> {
    let set = cpu_set(field, list)?;
    nix::sched::sched_setaffinity(pid, &set).ctx(Error::Process, || {
        format!("{field} {list:?}: sched_setaffinity")
    })
}

/// Puts the runtime's affinity back as it was when dropped.
pub(crate) struct AffinityGuard(CpuSet);

impl Drop for AffinityGuard {
    fn drop(&mut self) {
        let _ = nix::sched::sched_setaffinity(Pid::from_raw(0), &self.0);
    }
}

/// `exec`, right before forking the process that joins the container's
/// cgroup: the runtime's affinity (which the fork inherits) becomes
/// `execCPUAffinity.initial` until the guard is dropped.
pub(crate) fn initial_affinity(process: &Process) -> Result<Option<AffinityGuard>> {
    let Some(list) = process
        .exec_cpu_affinity()
        .as_ref()
        .and_then(|a| a.initial().as_deref())
        .filter(|list| !list.is_empty())
    else {
        return Ok(None);
    };
    let old = nix::sched::sched_getaffinity(Pid::from_raw(0))
        .ctx(Error::Process, || "sched_getaffinity")?;
    set_affinity("process.execCPUAffinity.initial", list, Pid::from_raw(0))?;
    Ok(Some(AffinityGuard(old)))
}

/// Sets the attributes in the calling process (the container's init, or an
/// exec'd process when `exec` is true), in its cgroup and namespaces.
pub(crate) fn apply(process: &Process, linux: Option<&Linux>, exec: bool) -> Result<()> {
    if let Some(p) = linux.and_then(|linux| linux.personality().as_ref()) {
        sys::set_personality(persona(p.domain())).ctx(Error::Process, || {
            format!("linux.personality.domain {}: personality", p.domain())
        })?;
    }
    if let Some(m) = linux.and_then(|linux| linux.memory_policy().as_ref()) {
        let (mode, mask, maxnode) = mempolicy(m)?;
        sys::set_mempolicy(mode, &mask, maxnode).ctx(Error::Process, || {
            format!(
                "linux.memoryPolicy mode {} nodes {:?}: set_mempolicy",
                m.mode(),
                m.nodes().as_deref().unwrap_or("")
            )
        })?;
    }
    if let Some(io) = process.io_priority() {
        sys::ioprio_set_self(ioprio(io.class(), io.priority())).ctx(Error::Process, || {
            format!(
                "process.ioPriority class {} priority {}: ioprio_set",
                io.class(),
                io.priority()
            )
        })?;
    }
    if let Some(s) = process.scheduler() {
        sys::sched_setattr_self(&sched_attr(s)).ctx(Error::Process, || {
            format!("process.scheduler policy {}: sched_setattr", s.policy())
        })?;
    }
    if exec
        && let Some(list) = process
            .exec_cpu_affinity()
            .as_ref()
            .and_then(|a| a.cpu_affinity_final().as_deref())
            .filter(|list| !list.is_empty())
    {
        set_affinity("process.execCPUAffinity.final", list, Pid::from_raw(0))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(r: Result<()>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn lists_parse_and_refuse_nonsense() {
        assert_eq!(parse_list("f", "0-3,7", 8).unwrap(), vec![0, 1, 2, 3, 7]);
        assert_eq!(parse_list("f", "1", 8).unwrap(), vec![1]);
        for invalid in ["", "0-", "-1", "3-1", "a", "1,,2", " 1", "0x1"] {
            let e = parse_list("f", invalid, 8).unwrap_err().to_string();
            assert!(e.starts_with(&format!("f {invalid:?}")), "{invalid}: {e}");
        }
        assert!(
            parse_list("f", "8", 8)
                .unwrap_err()
                .to_string()
                .contains("not below 8")
        );
    }

    #[test]
    fn io_priority_values() {
        validate_process(&json!({"ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 4}}))
            .unwrap();
        assert_eq!(
            err(validate_process(
                &json!({"ioPriority": {"class": "IOPRIO_CLASS_X", "priority": 1}})
            )),
            "process.ioPriority.class IOPRIO_CLASS_X is not supported"
        );
        assert!(
            err(validate_process(
                &json!({"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 8}})
            ))
            .starts_with("process.ioPriority.priority 8 is out of range")
        );
        assert_eq!(
            err(validate_process(&json!({"ioPriority": {"priority": 1}}))),
            "process.ioPriority.class is required"
        );
        assert_eq!(ioprio(IOPriorityClass::IoprioClassBe, 5), (2 << 13) | 5);
        assert_eq!(ioprio(IOPriorityClass::IoprioClassIdle, 0), 3 << 13);
    }

    #[test]
    fn scheduler_values() {
        let ok = |s: Value| validate_process(&json!({ "scheduler": s })).unwrap();
        let scheduler_error = |s: Value| err(validate_process(&json!({ "scheduler": s })));
        ok(json!({"policy": "SCHED_BATCH", "nice": 5}));
        ok(json!({"policy": "SCHED_FIFO", "priority": 10, "flags": ["SCHED_FLAG_RESET_ON_FORK"]}));
        ok(
            json!({"policy": "SCHED_DEADLINE", "runtime": 10000000, "deadline": 30000000, "period": 30000000}),
        );
        assert_eq!(
            scheduler_error(json!({"policy": "SCHED_FOO"})),
            "process.scheduler.policy SCHED_FOO is not supported"
        );
        assert!(
            scheduler_error(json!({"policy": "SCHED_ISO"})).contains("SCHED_ISO is not supported")
        );
        assert!(
            scheduler_error(json!({"policy": "SCHED_OTHER", "nice": 20}))
                .starts_with("process.scheduler.nice 20")
        );
        assert!(scheduler_error(json!({"policy": "SCHED_FIFO"})).contains("priority is required"));
        assert!(
            scheduler_error(json!({"policy": "SCHED_RR", "priority": 100}))
                .starts_with("process.scheduler.priority 100")
        );
        assert!(
            scheduler_error(json!({"policy": "SCHED_OTHER", "priority": 3}))
                .contains("not valid with SCHED_OTHER")
        );
        assert!(
            scheduler_error(json!({"policy": "SCHED_OTHER", "runtime": 5}))
                .contains("only valid with SCHED_DEADLINE")
        );
        assert_eq!(
            scheduler_error(json!({"policy": "SCHED_OTHER", "flags": ["SCHED_RESET_ON_FORK"]})),
            "process.scheduler.flags \"SCHED_RESET_ON_FORK\" is not supported"
        );
        assert_eq!(
            scheduler_error(json!({})),
            "process.scheduler.policy is required"
        );
    }

    #[test]
    fn spec_scheduler_flags_reach_oci_spec_types_with_the_kernel_values() {
        for (name, value, _) in SCHED_FLAGS {
            let mut p = json!({"scheduler": {"policy": "SCHED_OTHER", "flags": [name]}});
            validate_process(&p).unwrap();
            normalize_process(&mut p);
            let s: Scheduler = serde_json::from_value(p["scheduler"].clone()).unwrap();
            assert_eq!(sched_attr(&s).flags, *value, "{name}");
        }
        for (name, value) in SCHED_POLICIES {
            let s: Scheduler = serde_json::from_value(json!({ "policy": name })).unwrap();
            assert_eq!(sched_attr(&s).policy, *value, "{name}");
        }
        let s: Scheduler = serde_json::from_value(
            json!({"policy": "SCHED_DEADLINE", "runtime": 1, "deadline": 2, "period": 3}),
        )
        .unwrap();
        let a = sched_attr(&s);
        assert_eq!((a.policy, a.runtime, a.deadline, a.period), (6, 1, 2, 3));
    }

    #[test]
    fn exec_cpu_affinity_values() {
        validate_process(&json!({"execCPUAffinity": {"initial": "0", "final": "0-1,3"}})).unwrap();
        validate_process(&json!({"execCPUAffinity": {"final": ""}})).unwrap();
        assert_eq!(
            err(validate_process(
                &json!({"execCPUAffinity": {"final": "1-"}})
            )),
            "process.execCPUAffinity.final \"1-\" is not a list such as \"0-3,7\""
        );
        assert!(
            err(validate_process(
                &json!({"execCPUAffinity": {"initial": "4096"}})
            ))
            .contains("not below 1024")
        );
    }

    #[test]
    fn personality_values() {
        validate_linux(&json!({"personality": {"domain": "LINUX32"}})).unwrap();
        validate_linux(&json!({"personality": {"domain": "LINUX", "flags": []}})).unwrap();
        assert_eq!(
            err(validate_linux(
                &json!({"personality": {"domain": "LINUX64"}})
            )),
            "linux.personality.domain LINUX64 is not supported"
        );
        assert_eq!(
            err(validate_linux(
                &json!({"personality": {"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}})
            )),
            "linux.personality.flags \"ADDR_NO_RANDOMIZE\" is not supported"
        );
        for (name, value) in PERSONALITY_DOMAINS {
            let d: LinuxPersonalityDomain = serde_json::from_value(json!(name)).unwrap();
            assert_eq!(persona(d), *value);
        }
    }

    #[test]
    fn memory_policy_values() {
        let ok = |m: Value| validate_linux(&json!({ "memoryPolicy": m })).unwrap();
        let policy_error = |m: Value| err(validate_linux(&json!({ "memoryPolicy": m })));
        ok(json!({"mode": "MPOL_BIND", "nodes": "0"}));
        ok(json!({"mode": "MPOL_INTERLEAVE", "nodes": "2-3", "flags": ["MPOL_F_STATIC_NODES"]}));
        ok(json!({"mode": "MPOL_DEFAULT"}));
        ok(json!({"mode": "MPOL_PREFERRED"}));
        assert_eq!(
            policy_error(json!({"mode": "MPOL_FOO"})),
            "linux.memoryPolicy.mode MPOL_FOO is not supported"
        );
        assert_eq!(
            policy_error(json!({"mode": "MPOL_BIND", "nodes": "0-"})),
            "linux.memoryPolicy.nodes \"0-\" is not a list such as \"0-3,7\""
        );
        assert!(policy_error(json!({"mode": "MPOL_BIND"})).contains("must name a node"));
        assert!(
            policy_error(json!({"mode": "MPOL_LOCAL", "nodes": "0"})).contains("must be empty")
        );
        assert_eq!(
            policy_error(json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_X"]})),
            "linux.memoryPolicy.flags MPOL_F_X is not supported"
        );
        assert!(
            policy_error(json!({"mode": "MPOL_BIND", "nodes": "0",
                       "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}))
            .contains("exclude each other")
        );
        for (name, value) in MPOL_MODES {
            let m: LinuxMemoryPolicy =
                serde_json::from_value(json!({"mode": name, "nodes": "0,65"})).unwrap();
            let (mode, mask, maxnode) = mempolicy(&m).unwrap();
            assert_eq!(mode, *value, "{name}");
            assert_eq!(maxnode, 67);
            assert_eq!(mask.iter().map(|word| word.count_ones()).sum::<u32>(), 2);
        }
        for (name, value) in MPOL_FLAGS {
            let m: LinuxMemoryPolicy =
                serde_json::from_value(json!({"mode": "MPOL_DEFAULT", "flags": [name]})).unwrap();
            assert_eq!(mempolicy(&m).unwrap(), (*value, vec![], 0), "{name}");
        }
    }
}
