//! The process's identity and privileges: rlimits, user and groups,
//! capabilities (all five sets) and no_new_privs.

pub mod exe;
pub mod lsm;
pub mod seccomp;

use caps::{CapSet, CapsHashSet};
use nix::sys::resource::{Resource, setrlimit};
use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
use oci_spec::runtime::{Capabilities, LinuxCapabilities, PosixRlimitType, Process};

use crate::error::{Context, Error, Result};

fn resource(t: PosixRlimitType) -> Resource {
    use PosixRlimitType as T;
    match t {
        T::RlimitCpu => Resource::RLIMIT_CPU,
        T::RlimitFsize => Resource::RLIMIT_FSIZE,
        T::RlimitData => Resource::RLIMIT_DATA,
        T::RlimitStack => Resource::RLIMIT_STACK,
        T::RlimitCore => Resource::RLIMIT_CORE,
        T::RlimitRss => Resource::RLIMIT_RSS,
        T::RlimitNproc => Resource::RLIMIT_NPROC,
        T::RlimitNofile => Resource::RLIMIT_NOFILE,
        T::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        T::RlimitAs => Resource::RLIMIT_AS,
        T::RlimitLocks => Resource::RLIMIT_LOCKS,
        T::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        T::RlimitNice => Resource::RLIMIT_NICE,
        T::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        T::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

pub fn set_rlimits(p: &Process) -> Result<()> {
    for r in p.rlimits().iter().flatten() {
        if r.soft() > r.hard() {
            return Err(Error::Security(format!(
                "rlimit {:?}: soft limit {} is above the hard limit {}",
                r.typ(),
                r.soft(),
                r.hard()
            )));
        }
        let res = resource(r.typ());
        if let Err(e) = setrlimit(res, r.soft(), r.hard()) {
            let hint = match nix::sys::resource::getrlimit(res) {
                Ok((_, cur)) if e == nix::errno::Errno::EPERM && r.hard() > cur => format!(
                    " (raising the hard limit above {cur} needs privilege: CAP_SYS_RESOURCE)"
                ),
                _ => String::new(),
            };
            return Err(Error::Security(format!(
                "setrlimit {:?} to {}/{}: {e:?}{hint}",
                r.typ(),
                r.soft(),
                r.hard()
            )));
        }
    }
    Ok(())
}

fn to_caps(set: &Option<Capabilities>) -> Result<CapsHashSet> {
    set.iter()
        .flatten()
        .map(|c| {
            let name = format!("CAP_{c}");
            name.parse::<caps::Capability>()
                .map_err(|_| Error::Security(format!("unknown capability {name}")))
        })
        .collect()
}

/// Takes out of every set the capabilities this runtime cannot grant (not
/// in its own bounding set), each with a warning (config.md "Linux
/// Process": runtimes should not fail on them).
pub fn drop_ungrantable(p: &mut Process) {
    // Read here, before the init is forked, also for `ignored_signals`.
    own_status();
    let Some(mut c) = p.capabilities().clone() else {
        return;
    };
    let Some(ours) = own_bounding().or_else(|| caps::read(None, CapSet::Bounding).ok()) else {
        return;
    };
    let mut warned = std::collections::HashSet::new();
    let mut keep = |set: &Option<Capabilities>| {
        set.as_ref().map(|s| {
            s.iter()
                .filter(|cap| {
                    let ok = format!("CAP_{cap}")
                        .parse::<caps::Capability>()
                        .is_ok_and(|k| ours.contains(&k));
                    if !ok && warned.insert(cap.to_string()) {
                        crate::logging::warn(&format!(
                            "capability CAP_{cap} cannot be granted here: left out"
                        ));
                    }
                    ok
                })
                .copied()
                .collect()
        })
    };
    let b = keep(c.bounding());
    let e = keep(c.effective());
    let i = keep(c.inheritable());
    let pm = keep(c.permitted());
    let a = keep(c.ambient());
    c.set_bounding(b);
    c.set_effective(e);
    c.set_inheritable(i);
    c.set_permitted(pm);
    c.set_ambient(a);
    p.set_capabilities(Some(c));
}

/// The two masks of /proc/self/status the start path needs, read once,
/// in the process that parsed the config, on the host's /proc: `CapBnd`
/// (the bounding set: one read where asking the kernel cap by cap is a
/// prctl each, 41) and `SigIgn` (the signals ignored since ocirun started,
/// which the container's process must not inherit). The processes forked
/// from it see the values read before the fork.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct OwnStatus {
    bounding: Option<u64>,
    ignored: Option<u64>,
}

static OWN_STATUS: std::sync::OnceLock<OwnStatus> = std::sync::OnceLock::new();

fn own_status() -> OwnStatus {
    *OWN_STATUS.get_or_init(|| {
        crate::sys::fd::read_text("/proc/self/status")
            .map(|s| parse_status(&s))
            .unwrap_or_default()
    })
}

fn parse_status(status: &str) -> OwnStatus {
    let mask = |key: &str| {
        let hex = status.lines().find_map(|l| l.strip_prefix(key))?.trim();
        u64::from_str_radix(hex, 16).ok()
    };
    OwnStatus {
        bounding: mask("CapBnd:"),
        ignored: mask("SigIgn:"),
    }
}

/// The signals ignored when ocirun started (bit n-1 for signal n), if
/// /proc/self/status was read earlier in this process or the one it was
/// forked from; never read here, where /proc may be the container's.
pub(crate) fn ignored_signals() -> Option<u64> {
    OWN_STATUS.get().and_then(|s| s.ignored)
}

/// Our bounding set, from /proc/self/status. None when the file or the
/// line cannot be read; the caller then asks the kernel.
fn own_bounding() -> Option<caps::CapsHashSet> {
    own_status().bounding.map(caps_of_mask)
}

fn caps_of_mask(bits: u64) -> caps::CapsHashSet {
    caps::all()
        .into_iter()
        .filter(|c| c.index() < 64 && bits & (1 << c.index()) != 0)
        .collect()
}

/// Drops from the bounding set every capability the process may not keep.
/// Must run while we still hold CAP_SETPCAP, i.e. before switching user.
pub fn apply_bounding(c: Option<&LinuxCapabilities>) -> Result<()> {
    let keep = c
        .map(|c| to_caps(c.bounding()))
        .transpose()?
        .unwrap_or_default();
    // Dropped without asking first (one prctl each, not two): dropping a
    // capability the set no longer holds succeeds with CAP_SETPCAP, and an
    // error counts only for one it still holds.
    for cap in caps::all() {
        if !keep.contains(&cap)
            && let Err(e) = caps::drop(None, CapSet::Bounding, cap)
            && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false)
        {
            return Err(Error::Security(format!(
                "drop {cap} from the bounding set: {e}"
            )));
        }
    }
    Ok(())
}

/// Switches to the process's uid, gid and supplementary groups. The caller
/// has set PR_SET_KEEPCAPS so the permitted capabilities survive the uid
/// change for `apply_caps` (execve clears the flag again).
pub fn switch_user(p: &Process) -> Result<()> {
    let u = p.user();
    let groups: Vec<Gid> = u
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    // setgroups is refused in a user namespace whose setgroups file says deny;
    // only fail when groups were asked for.
    if let Err(e) = setgroups(&groups)
        && !groups.is_empty()
    {
        return Err(e).ctx(Error::Security, || {
            format!(
                "setgroups {:?}",
                u.additional_gids().as_ref().unwrap_or(&vec![])
            )
        });
    }
    let gid = Gid::from_raw(u.gid());
    setresgid(gid, gid, gid).ctx(Error::Security, || format!("setgid {}", u.gid()))?;
    let uid = Uid::from_raw(u.uid());
    setresuid(uid, uid, uid).ctx(Error::Security, || format!("setuid {}", u.uid()))
}

/// Sets the effective, permitted, inheritable and ambient sets.
pub fn apply_caps(c: Option<&LinuxCapabilities>) -> Result<()> {
    // No capabilities object means no capabilities at all.
    let get = |f: fn(&LinuxCapabilities) -> &Option<Capabilities>| {
        c.map_or(Ok(CapsHashSet::new()), |c| to_caps(f(c)))
    };
    let eff = get(LinuxCapabilities::effective)?;
    let perm = get(LinuxCapabilities::permitted)?;
    let inh = get(LinuxCapabilities::inheritable)?;
    let amb = get(LinuxCapabilities::ambient)?;
    // Inheritable while we still hold CAP_SETPCAP, then effective (a subset
    // of the current permitted set), then shrink permitted to its final value.
    caps::set(None, CapSet::Inheritable, &inh)
        .map_err(|e| Error::Security(format!("set inheritable capabilities: {e}")))?;
    caps::set(None, CapSet::Effective, &eff)
        .map_err(|e| Error::Security(format!("set effective capabilities: {e}")))?;
    caps::set(None, CapSet::Permitted, &perm)
        .map_err(|e| Error::Security(format!("set permitted capabilities: {e}")))?;
    // Ambient needs each capability in permitted and inheritable; runc skips
    // the ones that are not, and so do we.
    let _ = caps::clear(None, CapSet::Ambient);
    for cap in amb {
        if perm.contains(&cap) && inh.contains(&cap) {
            caps::raise(None, CapSet::Ambient, cap)
                .map_err(|e| Error::Security(format!("raise ambient {cap}: {e}")))?;
        }
    }
    Ok(())
}

pub fn no_new_privs() -> Result<()> {
    nix::sys::prctl::set_no_new_privs().ctx(Error::Security, || "prctl PR_SET_NO_NEW_PRIVS")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounding_set_read_from_status_is_the_kernels() {
        assert_eq!(
            own_bounding().unwrap(),
            caps::read(None, CapSet::Bounding).unwrap()
        );
        let two = parse_status("Name:\tx\nSigIgn:\t0000000180001001\nCapBnd:\t0000000000200001\n");
        let want: caps::CapsHashSet =
            [caps::Capability::CAP_CHOWN, caps::Capability::CAP_SYS_ADMIN].into();
        assert_eq!(caps_of_mask(two.bounding.unwrap()), want);
        // SIGHUP, SIGPIPE and the two signals glibc keeps (32, 33).
        assert_eq!(two.ignored, Some(1 | 1 << 12 | 1 << 31 | 1 << 32));
        assert_eq!(parse_status("CapBnd:\tzz\n"), OwnStatus::default());
        assert_eq!(parse_status("Name:\tx\n"), OwnStatus::default());
    }

    #[test]
    fn capability_names_convert() {
        let c: LinuxCapabilities = serde_json::from_str(
            r#"{"bounding":["CAP_SYS_ADMIN","CAP_NET_BIND_SERVICE","CAP_AUDIT_WRITE"]}"#,
        )
        .unwrap();
        let s = to_caps(c.bounding()).unwrap();
        assert!(s.contains(&caps::Capability::CAP_SYS_ADMIN));
        assert!(s.contains(&caps::Capability::CAP_NET_BIND_SERVICE));
        assert_eq!(s.len(), 3);
    }
}
