//! Loading and validating config.json (oci-spec types), and the defaults that
//! `ocirun spec` writes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Context, Error, Layer, Result};
use crate::process::{attrs, netdev};

/// The runtime-spec version ocirun writes in `spec` and reports in `state`.
pub const OCI_VERSION: &str = "1.3.0";

/// The devices every container gets (runtime-spec "Default Devices"):
/// character devices (path, major, minor), made 0666 root:root in its /dev
/// and allowed `rwm` by its device cgroup. In runc's order (its
/// `AllowedDevices`), which the device rules keep.
pub const DEFAULT_DEVICES: [(&str, i64, i64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/random", 1, 8),
    ("/dev/full", 1, 7),
    ("/dev/tty", 5, 0),
    ("/dev/zero", 1, 5),
    ("/dev/urandom", 1, 9),
];

/// A loaded and validated bundle.
pub struct Bundle {
    /// Absolute path of the bundle directory.
    pub dir: PathBuf,
    /// Absolute path of the root filesystem.
    pub rootfs: PathBuf,
    pub spec: Spec,
}

/// Reads `<bundle>/config.json` and validates it. Unknown fields are ignored;
/// any runtime-spec 1.x version is accepted.
pub fn load(bundle: &Path) -> Result<Bundle> {
    let dir = std::path::absolute(bundle)
        .map_err(|e| Error::Spec(format!("bundle {}: {e}", bundle.display())))?;
    let path = dir.join("config.json");
    let text = std::fs::read(&path).ctx(Error::Spec, || format!("read {}", path.display()))?;
    let spec = parse(&text).map_err(|e| match e.message().strip_prefix("json: ") {
        Some(m) if e.layer() == Layer::Spec => {
            Error::Spec(format!("parse {}: {m}", path.display()))
        }
        _ => e,
    })?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::Spec(format!("{}: root is missing", path.display())))?;
    // The rootfs path may be or contain symlinks (runc 1.1 refuses a
    // symlinked rootfs; we resolve it once): everything later works on the
    // real directory.
    let named = dir.join(root.path());
    let rootfs =
        std::fs::canonicalize(&named).ctx(Error::Spec, || format!("rootfs {}", named.display()))?;
    if rootfs == Path::new("/") {
        return Err(Error::Spec(format!(
            "rootfs {} resolves to / (the host's root): give a directory of its own",
            named.display()
        )));
    }
    if !rootfs.is_dir() {
        return Err(Error::Spec(format!(
            "rootfs {} is not a directory",
            named.display()
        )));
    }
    validate(&spec)?;
    check_host(&spec)?;
    Ok(Bundle { dir, rootfs, spec })
}

/// config.json's text into oci-spec's types, after the checks that must see
/// the raw values (`process::attrs`: fields and values named in errors, the
/// spec's scheduler flag names accepted). A JSON error starts with "json: ".
pub fn parse(text: &[u8]) -> Result<Spec> {
    let mut v: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| Error::Spec(format!("json: {e}")))?;
    if let Some(p) = v.get_mut("process").filter(|p| p.is_object()) {
        attrs::validate_process(p)?;
        attrs::normalize_process(p);
        drop_unknown_capabilities(p);
    }
    if let Some(linux) = v.get("linux").filter(|linux| linux.is_object()) {
        attrs::validate_linux(linux)?;
    }
    from_value(v)
}

/// oci-spec's types from checked JSON; a type error names the field
/// (`process.user.uid: invalid type: string "x", expected u32`).
fn from_value<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            Error::Spec(format!("json: {inner}"))
        } else {
            Error::Spec(format!("json: {path}: {inner}"))
        }
    })
}

/// An `exec --process` file into oci-spec's Process, checked as `parse`
/// checks config.json's process.
pub fn parse_process(text: &[u8]) -> Result<oci_spec::runtime::Process> {
    let mut p: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| Error::Spec(format!("json: {e}")))?;
    attrs::validate_process(&p)?;
    attrs::normalize_process(&mut p);
    drop_unknown_capabilities(&mut p);
    from_value(p)
}

/// What depends on the host rather than the config: refused before
/// anything of the container exists.
fn check_host(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref().expect("validated");
    if linux.intel_rdt().is_some() {
        let mounted = crate::sys::fd::read_text("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|line| {
                line.split(" - ")
                    .nth(1)
                    .is_some_and(|t| t.starts_with("resctrl "))
            });
        return Err(Error::Spec(if mounted {
            "linux.intelRdt is not supported by ocirun (resctrl is mounted, but ocirun does not manage resctrl groups)".into()
        } else {
            "linux.intelRdt: resctrl filesystem not mounted at /sys/fs/resctrl".into()
        }));
    }
    Ok(())
}

/// Takes the capability names this build does not know out of a process's
/// capabilities, each with a warning (config.md "Linux Process": a value
/// that cannot be mapped is logged, not fatal).
fn drop_unknown_capabilities(process: &mut serde_json::Value) {
    let Some(caps) = process
        .get_mut("capabilities")
        .and_then(|c| c.as_object_mut())
    else {
        return;
    };
    for (set, names) in caps.iter_mut() {
        if let Some(list) = names.as_array_mut() {
            list.retain(|n| {
                let known =
                    serde_json::from_value::<oci_spec::runtime::Capability>(n.clone()).is_ok();
                if !known {
                    crate::logging::warn(&format!(
                        "process.capabilities.{set}: unknown capability {n} ignored"
                    ));
                }
                known
            });
        }
    }
}

/// Checks a process (config.json's, or `exec --process`'s).
pub fn validate_process(process: &oci_spec::runtime::Process) -> Result<()> {
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::Spec("process.args must not be empty".into()));
    }
    if !process.cwd().is_absolute() {
        return Err(Error::Spec(format!(
            "process.cwd {} is not an absolute path",
            process.cwd().display()
        )));
    }
    Ok(())
}

/// Checks that a spec is one we can honour. Pure: touches no file.
pub fn validate(spec: &Spec) -> Result<()> {
    check_version(spec.version())?;
    // process is optional at `create` (runtime-spec 1.3); `start` then fails.
    if let Some(process) = spec.process() {
        validate_process(process)?;
    }
    let Some(linux) = spec.linux() else {
        return Err(Error::Spec(
            "linux section is missing from config.json".into(),
        ));
    };
    let mut seen = HashSet::new();
    let namespaces = linux.namespaces().as_deref().unwrap_or_default();
    for ns in namespaces {
        if !seen.insert(ns.typ()) {
            return Err(Error::Spec(format!(
                "namespace {} appears more than once",
                ns.typ()
            )));
        }
        if let Some(p) = ns.path()
            && !p.is_absolute()
        {
            return Err(Error::Spec(format!(
                "namespace {} path {} is not absolute",
                ns.typ(),
                p.display()
            )));
        }
    }
    let has = |t: LinuxNamespaceType| seen.contains(&t);
    // Without a mount namespace the container runs in the runtime's (as with
    // runc); a read-only root would then be the host's mount made read-only.
    if !has(LinuxNamespaceType::Mount)
        && spec.root().as_ref().and_then(|r| r.readonly()) == Some(true)
    {
        return Err(Error::Spec(
            "root.readonly needs a mount namespace (linux.namespaces has no \"mount\")".into(),
        ));
    }
    let new_user = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if new_user && !has_maps {
        return Err(Error::Spec(
            "a new user namespace needs linux.uidMappings and linux.gidMappings".into(),
        ));
    }
    if has_maps && !new_user {
        return Err(Error::Spec(
            "linux.uidMappings/gidMappings need a new user namespace".into(),
        ));
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(Error::Spec(
            "hostname is set but there is no uts namespace to set it in".into(),
        ));
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(Error::Spec(
            "domainname is set but there is no uts namespace to set it in".into(),
        ));
    }
    if linux.time_offsets().as_ref().is_some_and(|o| !o.is_empty())
        && !namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Time && n.path().is_none())
    {
        return Err(Error::Spec(
            "linux.timeOffsets need a new time namespace".into(),
        ));
    }
    for (key, _) in linux.sysctl().iter().flatten() {
        check_sysctl(key, &|t| has(t))?;
    }
    let in_userns = has(LinuxNamespaceType::User);
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            return Err(Error::Spec(format!(
                "mount destination {} is not an absolute path",
                m.destination().display()
            )));
        }
        let opts = crate::rootfs::options::parse(m.options().as_deref().unwrap_or_default())?;
        if crate::rootfs::idmap::request(m, &opts)?.is_some() && in_userns {
            // The mounts are made by the init, inside the container's user
            // namespace, which cannot idmap the host's filesystems.
            return Err(Error::Spec(format!(
                "mount on {}: idmapped mounts in a container with a user namespace \
                 are not supported by this version of ocirun",
                m.destination().display()
            )));
        }
    }
    if let Some(p) = linux.rootfs_propagation() {
        crate::rootfs::propagation_flag(p)?;
    }
    netdev::validate(linux)?;
    Ok(())
}

fn check_version(v: &str) -> Result<()> {
    let major = v.split('.').next().unwrap_or("");
    if major != "1" {
        return Err(Error::Spec(format!(
            "unsupported ociVersion {v:?}: ocirun runs runtime-spec 1.x configs"
        )));
    }
    Ok(())
}

/// Only namespaced sysctls may be set, and only with the namespace that
/// isolates them: anything else would change the host.
fn check_sysctl(key: &str, has: &dyn Fn(LinuxNamespaceType) -> bool) -> Result<()> {
    let ipc = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let need = if ipc.contains(&key) || key.starts_with("fs.mqueue.") {
        LinuxNamespaceType::Ipc
    } else if key.starts_with("net.") {
        LinuxNamespaceType::Network
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        LinuxNamespaceType::Uts
    } else {
        return Err(Error::Spec(format!(
            "sysctl {key} is not namespaced and cannot be set in a container"
        )));
    };
    if !has(need) {
        return Err(Error::Spec(format!(
            "sysctl {key} needs a {need} namespace of the container's own"
        )));
    }
    Ok(())
}

/// The spec `ocirun spec` writes: runc's defaults (same mounts, masked and
/// readonly paths, capabilities), with a cgroup namespace added.
pub fn default_spec(rootless: bool) -> Result<Spec> {
    let text = include_str!("default.json");
    let mut spec: Spec = serde_json::from_str(text)
        .map_err(|e| Error::Spec(format!("built-in default spec: {e}")))?;
    spec.set_version(OCI_VERSION.to_string());
    if rootless {
        make_rootless(&mut spec);
    }
    Ok(spec)
}

fn make_rootless(spec: &mut Spec) {
    use oci_spec::runtime::{LinuxIdMappingBuilder, LinuxNamespaceBuilder};
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let Some(linux) = spec.linux_mut() else {
        return;
    };
    let mut ns = linux.namespaces().clone().unwrap_or_default();
    ns.retain(|n| n.typ() != LinuxNamespaceType::Network);
    ns.push(
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::User)
            .build()
            .expect("namespace"),
    );
    linux.set_namespaces(Some(ns));
    let map = |host| {
        LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(host)
            .size(1u32)
            .build()
            .expect("mapping")
    };
    linux.set_uid_mappings(Some(vec![map(uid)]));
    linux.set_gid_mappings(Some(vec![map(gid)]));
    linux.set_resources(None);
    if let Some(mounts) = spec.mounts_mut() {
        mounts.retain(|m| m.destination() != Path::new("/sys/fs/cgroup"));
        for m in mounts.iter_mut() {
            // sysfs cannot be mounted without a network namespace of the
            // container's own: a read-only bind of the host's (as runc).
            if m.destination() == Path::new("/sys") {
                m.set_typ(Some("none".into()));
                m.set_source(Some("/sys".into()));
                m.set_options(Some(
                    ["rbind", "nosuid", "noexec", "nodev", "ro"]
                        .map(String::from)
                        .to_vec(),
                ));
            }
            if m.destination() == Path::new("/dev/pts")
                && let Some(opts) = m.options_mut()
            {
                opts.retain(|o| o != "gid=5");
            }
        }
    }
}

/// `ocirun features`: what this build supports, in the runtime spec's
/// features.json shape (checked by parsing it into oci-spec's type).
pub fn features() -> Result<serde_json::Value> {
    use crate::rootfs::options;
    let mut caps: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    caps.sort();
    let lib = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    // The systemd cgroup driver (system and user manager) when built in.
    let systemd = crate::cgroups::systemd::bus::BUILT_IN;
    let seccomp_flags: Vec<&str> = crate::security::seccomp::FILTER_FLAGS
        .iter()
        .map(|&(name, _)| name)
        .collect();
    let v = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.3.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": options::known_words(),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": systemd, "systemdUser": systemd},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                              "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
                          "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
                          "SCMP_ARCH_PPC64LE", "SCMP_ARCH_RISCV64", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_X32",
                          "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"],
                "knownFlags": seccomp_flags,
                "supportedFlags": seccomp_flags
            },
            // Supported by this build: applied through /proc/self/attr on exec
            // (a host without the module refuses the container).
            "apparmor": {"enabled": true},
            "selinux": {"enabled": true},
            // idmap/ridmap with the mount's own uidMappings/gidMappings.
            "mountExtensions": {"idmap": {"enabled": true}},
            "memoryPolicy": {
                "modes": ["MPOL_DEFAULT", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE",
                          "MPOL_PREFERRED", "MPOL_PREFERRED_MANY", "MPOL_LOCAL"],
                "flags": ["MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"]
            },
            "netDevices": {"enabled": true},
            // Refused with a clear error: ocirun does not manage resctrl groups.
            "intelRdt": {"enabled": false}
        },
        "annotations": {"io.github.seccomp.libseccomp.version": lib}
    });
    let _: oci_spec::runtime::Features = serde_json::from_value(v.clone())
        .map_err(|e| Error::Spec(format!("features document: {e}")))?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Spec {
        default_spec(false).unwrap()
    }

    #[test]
    fn default_spec_is_valid_and_like_runc() {
        let s = base();
        validate(&s).unwrap();
        assert_eq!(s.root().as_ref().unwrap().path(), Path::new("rootfs"));
        assert_eq!(s.mounts().as_ref().unwrap().len(), 7);
    }

    #[test]
    fn accepts_any_1x_version_and_unknown_fields() {
        let mut v: serde_json::Value = serde_json::to_value(base()).unwrap();
        v["ociVersion"] = "1.3.0".into();
        v["somethingNew"] = serde_json::json!({"x": 1});
        v["linux"]["futureField"] = true.into();
        let s: Spec = serde_json::from_value(v).unwrap();
        validate(&s).unwrap();
    }

    #[test]
    fn rejects_other_major_versions() {
        let mut s = base();
        s.set_version("2.0.0".into());
        let e = validate(&s).unwrap_err().to_string();
        assert!(e.contains("unsupported ociVersion \"2.0.0\""), "{e}");
    }

    #[test]
    fn accepts_time_namespace() {
        let mut v: serde_json::Value = serde_json::to_value(base()).unwrap();
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "time"}));
        let s: Spec = serde_json::from_value(v).unwrap();
        validate(&s).unwrap();
    }

    #[test]
    fn features_document_is_valid() {
        let f = features().unwrap();
        assert_eq!(f["linux"]["seccomp"]["enabled"], true);
        assert_eq!(f["linux"]["netDevices"]["enabled"], true);
        assert_eq!(f["linux"]["intelRdt"]["enabled"], false);
        assert_eq!(
            f["linux"]["memoryPolicy"]["modes"]
                .as_array()
                .unwrap()
                .len(),
            7
        );
        let words: Vec<&str> = f["mountOptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|word| word.as_str().unwrap())
            .collect();
        for word in [
            "rbind",
            "rro",
            "rnosymfollow",
            "nosymfollow",
            "idmap",
            "ridmap",
        ] {
            assert!(words.contains(&word), "{word} not in {words:?}");
        }
        assert_eq!(f["linux"]["mountExtensions"]["idmap"]["enabled"], true);
    }

    #[test]
    fn idmapped_mounts_are_checked_up_front() {
        let mut v: serde_json::Value = serde_json::to_value(base()).unwrap();
        let maps = serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        v["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/data", "source": "/srv", "options": ["rbind", "idmap"],
            "uidMappings": maps, "gidMappings": maps}));
        let s: Spec = serde_json::from_value(v.clone()).unwrap();
        validate(&s).unwrap();
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "user"}));
        v["linux"]["uidMappings"] = maps.clone();
        v["linux"]["gidMappings"] = maps;
        let s: Spec = serde_json::from_value(v.clone()).unwrap();
        let e = validate(&s).unwrap_err().to_string();
        assert!(e.starts_with("mount on /data: idmapped mounts"), "{e}");
        let m = v["mounts"].as_array_mut().unwrap().last_mut().unwrap();
        m.as_object_mut().unwrap().remove("gidMappings");
        let s: Spec = serde_json::from_value(v).unwrap();
        let e = validate(&s).unwrap_err().to_string();
        assert!(
            e.contains("mount on /data: uidMappings and gidMappings"),
            "{e}"
        );
    }

    #[test]
    fn parse_names_the_field_of_a_bad_value_and_takes_the_spec_flag_names() {
        let mut v: serde_json::Value = serde_json::to_value(base()).unwrap();
        v["process"]["scheduler"] =
            serde_json::json!({"policy": "SCHED_BATCH", "flags": ["SCHED_FLAG_RESET_ON_FORK"]});
        let s = parse(&serde_json::to_vec(&v).unwrap()).unwrap();
        validate(&s).unwrap();
        v["process"]["scheduler"]["policy"] = "SCHED_FOO".into();
        let e = parse(&serde_json::to_vec(&v).unwrap())
            .unwrap_err()
            .to_string();
        assert_eq!(e, "process.scheduler.policy SCHED_FOO is not supported");
        v["process"].as_object_mut().unwrap().remove("scheduler");
        v["linux"]["personality"] = serde_json::json!({"domain": "LINUX64"});
        let e = parse(&serde_json::to_vec(&v).unwrap())
            .unwrap_err()
            .to_string();
        assert_eq!(e, "linux.personality.domain LINUX64 is not supported");
        assert!(parse(b"{").unwrap_err().to_string().starts_with("json: "));
    }

    #[test]
    fn sysctl_rules() {
        let all = |_| true;
        check_sysctl("net.ipv4.ip_forward", &all).unwrap();
        check_sysctl("kernel.shmmax", &all).unwrap();
        check_sysctl("fs.mqueue.msg_max", &all).unwrap();
        assert!(check_sysctl("kernel.panic", &all).is_err());
        let none = |_| false;
        assert!(check_sysctl("net.ipv4.ip_forward", &none).is_err());
    }

    #[test]
    fn user_namespace_needs_mappings() {
        let mut v: serde_json::Value = serde_json::to_value(base()).unwrap();
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "user"}));
        let s: Spec = serde_json::from_value(v).unwrap();
        assert!(
            validate(&s)
                .unwrap_err()
                .to_string()
                .contains("uidMappings")
        );
    }

    #[test]
    fn rootless_spec_has_user_namespace() {
        let s = default_spec(true).unwrap();
        validate(&s).unwrap();
        let ns = s.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert!(ns.iter().any(|n| n.typ() == LinuxNamespaceType::User));
    }
}
