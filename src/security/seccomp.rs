//! seccomp: `linux.seccomp` compiled with libseccomp in the parent (before
//! anything of the container exists, so a bad profile leaves nothing behind),
//! exported as a BPF program, and loaded by the init with one seccomp(2) call
//! as late as it can be: just before execve, or, without no_new_privileges,
//! while CAP_SYS_ADMIN is still held.

use std::io::{Read, Seek};
use std::os::fd::OwnedFd;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator, LinuxSyscall};

use crate::error::{Context, Error, Result};

/// A compiled filter, ready for seccomp(SECCOMP_SET_MODE_FILTER).
#[derive(Debug, Clone)]
pub struct Program {
    /// `struct sock_filter` instructions, 8 bytes each.
    pub bpf: Vec<u8>,
    /// SECCOMP_FILTER_FLAG_* for seccomp(2).
    pub flags: u32,
    /// A rule uses SCMP_ACT_NOTIFY: the filter yields a listener fd.
    pub notify: bool,
}

fn name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn action(a: LinuxSeccompAction, errno: Option<u32>, default_errno: u32) -> ScmpAction {
    use LinuxSeccompAction as A;
    match a {
        A::ScmpActKill | A::ScmpActKillThread => ScmpAction::KillThread,
        A::ScmpActKillProcess => ScmpAction::KillProcess,
        A::ScmpActTrap => ScmpAction::Trap,
        A::ScmpActErrno => ScmpAction::Errno(errno.unwrap_or(default_errno) as i32),
        A::ScmpActNotify => ScmpAction::Notify,
        A::ScmpActTrace => ScmpAction::Trace(errno.unwrap_or(default_errno) as u16),
        A::ScmpActLog => ScmpAction::Log,
        A::ScmpActAllow => ScmpAction::Allow,
    }
}

fn operator(op: LinuxSeccompOperator, value_two: Option<u64>, value: u64) -> (ScmpCompareOp, u64) {
    use LinuxSeccompOperator as O;
    match op {
        O::ScmpCmpNe => (ScmpCompareOp::NotEqual, value),
        O::ScmpCmpLt => (ScmpCompareOp::Less, value),
        O::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, value),
        O::ScmpCmpEq => (ScmpCompareOp::Equal, value),
        O::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, value),
        O::ScmpCmpGt => (ScmpCompareOp::Greater, value),
        // valueTwo is compared with (arg & value).
        O::ScmpCmpMaskedEq => (ScmpCompareOp::MaskedEqual(value), value_two.unwrap_or(0)),
    }
}

/// The filter flags a profile may ask for, by name (the kernel's values,
/// from libc); SECCOMP_FILTER_FLAG_NEW_LISTENER is set by `compile` itself
/// when a rule notifies. `features` lists these names.
pub(crate) const FILTER_FLAGS: [(&str, libc::c_ulong); 4] = [
    ("SECCOMP_FILTER_FLAG_TSYNC", libc::SECCOMP_FILTER_FLAG_TSYNC),
    ("SECCOMP_FILTER_FLAG_LOG", libc::SECCOMP_FILTER_FLAG_LOG),
    (
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
    ),
    (
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
    ),
];

fn lib(e: impl std::fmt::Display, what: impl std::fmt::Display) -> Error {
    Error::Security(format!("seccomp: {what}: {e}"))
}

/// Compiles a runtime-spec seccomp profile.
pub fn compile(s: &LinuxSeccomp) -> Result<Program> {
    // defaultErrnoRet is for the default action only, and only for actions
    // that return an errno; rules without errnoRet return EPERM.
    let eperm = libc::EPERM as u32;
    if s.default_errno_ret().is_some()
        && !matches!(
            s.default_action(),
            LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
        )
    {
        return Err(Error::Security(format!(
            "seccomp: defaultErrnoRet is set but defaultAction {} returns no errno",
            name(&s.default_action())
        )));
    }
    let default = action(s.default_action(), s.default_errno_ret(), eperm);
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| lib(e, "new filter"))?;
    // no_new_privs is the spec's business (process.noNewPrivileges), not libseccomp's.
    ctx.set_ctl_nnp(false)
        .map_err(|e| lib(e, "set nnp control"))?;
    for a in s.architectures().iter().flatten() {
        let n = name(a);
        let arch: ScmpArch = n.parse().map_err(|_| {
            Error::Security(format!(
                "seccomp: architecture {n} is not known to libseccomp"
            ))
        })?;
        ctx.add_arch(arch)
            .map_err(|e| lib(e, format!("add architecture {n}")))?;
    }
    let mut flags = 0;
    for f in s.flags().iter().flatten() {
        let n = name(f);
        let Some(&(_, bit)) = FILTER_FLAGS.iter().find(|(known, _)| *known == n) else {
            return Err(Error::Security(format!("seccomp: unknown filter flag {n}")));
        };
        flags |= bit as u32;
    }
    let mut notify = s.default_action() == LinuxSeccompAction::ScmpActNotify;
    for rule in s.syscalls().iter().flatten() {
        notify |= rule.action() == LinuxSeccompAction::ScmpActNotify;
        add_rule(&mut ctx, rule, default, eperm)?;
    }
    if notify {
        if s.listener_path().is_none() {
            return Err(Error::Security(
                "seccomp: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath".into(),
            ));
        }
        flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32;
    }
    // Export through a memfd: libseccomp 2.5 has no in-memory export.
    let fd =
        nix::sys::memfd::memfd_create(c"ocirun-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .ctx(Error::Security, || "seccomp: memfd_create")?;
    ctx.export_bpf(&fd).map_err(|e| lib(e, "export BPF"))?;
    let mut f = std::fs::File::from(fd);
    f.rewind()
        .map_err(|e| Error::Security(format!("seccomp: read BPF: {e}")))?;
    let mut bpf = Vec::new();
    f.read_to_end(&mut bpf)
        .map_err(|e| Error::Security(format!("seccomp: read BPF: {e}")))?;
    Ok(Program { bpf, flags, notify })
}

fn add_rule(
    ctx: &mut ScmpFilterContext,
    rule: &LinuxSyscall,
    default: ScmpAction,
    default_errno: u32,
) -> Result<()> {
    let act = action(rule.action(), rule.errno_ret(), default_errno);
    if act == default {
        return Ok(()); // libseccomp refuses rules that repeat the default
    }
    let conds: Vec<ScmpArgCompare> = rule
        .args()
        .iter()
        .flatten()
        .map(|a| {
            let (op, datum) = operator(a.op(), a.value_two(), a.value());
            ScmpArgCompare::new(a.index() as u32, op, datum)
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    let same_arg_twice = rule
        .args()
        .iter()
        .flatten()
        .any(|a| !seen.insert(a.index()));
    for n in rule.names() {
        // Unknown on this kernel/arch: skipped, as runc does.
        let Ok(sc) = ScmpSyscall::from_name(n) else {
            continue;
        };
        let r = if conds.is_empty() {
            ctx.add_rule(act, sc).map(drop)
        } else if same_arg_twice {
            // libseccomp cannot AND two conditions on one argument: like runc,
            // each becomes a rule of its own (OR).
            conds
                .iter()
                .try_for_each(|c| ctx.add_rule_conditional(act, sc, &[*c]).map(drop))
        } else {
            ctx.add_rule_conditional(act, sc, &conds).map(drop)
        };
        r.map_err(|e| lib(e, format!("rule for {n}")))?;
    }
    Ok(())
}

/// `compile`, with the result cached in `<state root>/.cache/seccomp/`,
/// keyed by the SHA-256 of the profile (and the libseccomp and ocirun
/// versions): a large profile is compiled once, later containers read ~2 KiB.
pub fn compile_cached(s: &LinuxSeccomp, state_root: &std::path::Path) -> Result<Program> {
    use sha2::Digest as _;
    let v = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let mut h = sha2::Sha256::new();
    h.update(serde_json::to_vec(s).expect("profile serialises"));
    h.update(v.as_bytes());
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    let key = crate::hex::encode(&h.finalize());
    let dir = state_root.join(".cache/seccomp");
    let path = dir.join(format!("{key}.bpf"));
    if let Ok(data) = std::fs::read(&path)
        && data.len() > 5
    {
        crate::logging::debug(|| format!("seccomp: cached program {}", path.display()));
        let flags = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        return Ok(Program {
            bpf: data[5..].to_vec(),
            flags,
            notify: data[4] == 1,
        });
    }
    let p = compile(s)?;
    // Best effort: a cache that cannot be written only costs time.
    let mut data = p.flags.to_le_bytes().to_vec();
    data.push(p.notify as u8);
    data.extend_from_slice(&p.bpf);
    let tmp = dir.join(format!(".{key}.{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_ok() && std::fs::write(&tmp, &data).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
        trim_cache(&dir, CACHE_ENTRIES);
    }
    Ok(p)
}

/// What a `listenerPath` agent receives with the listener fd (runc's
/// layout): the process's host pid and the container's state.
pub fn listener_state(
    seccomp: &LinuxSeccomp,
    pid: i32,
    state: &crate::hooks::State,
) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": crate::spec::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": seccomp.listener_metadata().clone().unwrap_or_default(),
        "state": state,
    })
}

/// How many compiled programs the cache keeps (a few KiB each).
const CACHE_ENTRIES: usize = 64;

/// Keeps the `keep` most recently written programs of the cache, so it
/// cannot grow without bound (every profile change adds one).
fn trim_cache(dir: &std::path::Path, keep: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<(std::time::SystemTime, std::path::PathBuf)> = rd
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".bpf"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if entries.len() <= keep {
        return;
    }
    entries.sort();
    for (_, path) in &entries[..entries.len() - keep] {
        let _ = std::fs::remove_file(path);
    }
}

/// Loads a compiled program into the calling thread; returns the listener
/// fd when the program asked for one.
pub fn load(p: &Program) -> Result<Option<OwnedFd>> {
    crate::sys::seccomp_set_filter(&p.bpf, p.flags).ctx(Error::Security, || "seccomp: load filter")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(v: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn compiles_actions_operators_and_skips_unknown_names() {
        let p = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat", "no_such_syscall_here"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 2048, "valueTwo": 2048, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["kill"], "action": "SCMP_ACT_LOG", "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
                {"names": ["uname"], "action": "SCMP_ACT_KILL_PROCESS"},
                {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}
            ]
        })))
        .unwrap();
        assert!(!p.bpf.is_empty() && p.bpf.len().is_multiple_of(8));
        assert_eq!(p.flags, libc::SECCOMP_FILTER_FLAG_LOG as u32);
        assert!(!p.notify);
    }

    #[test]
    fn default_errno_ret_needs_an_errno_action() {
        let e = compile(&profile(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("defaultErrnoRet"), "{e}");
        compile(&profile(
            serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38}),
        ))
        .unwrap();
    }

    #[test]
    fn cached_programs_equal_fresh_ones() {
        let prof = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
        }));
        let root =
            std::env::temp_dir().join(format!("ocirun-seccomp-cache-{}", std::process::id()));
        let a = compile_cached(&prof, &root).unwrap();
        let b = compile_cached(&prof, &root).unwrap();
        assert_eq!(a.bpf, b.bpf);
        assert_eq!(a.flags, b.flags);
        assert_eq!(
            std::fs::read_dir(root.join(".cache/seccomp"))
                .unwrap()
                .count(),
            1
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_cache_keeps_the_newest_programs() {
        let dir = std::env::temp_dir().join(format!("ocirun-seccomp-trim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..5 {
            let p = dir.join(format!("{i}.bpf"));
            std::fs::write(&p, b"x").unwrap();
            let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        trim_cache(&dir, 2);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["3.bpf", "4.bpf"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn notify_needs_a_listener() {
        let e = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        })))
        .unwrap_err();
        assert!(e.to_string().contains("listenerPath"), "{e}");
    }

    #[test]
    fn unknown_actions_fail_to_parse() {
        let r: std::result::Result<LinuxSeccomp, _> = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_EXPLODE"
        }));
        assert!(r.is_err());
    }
}
