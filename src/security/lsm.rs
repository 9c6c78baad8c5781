//! Linux security modules for the container's process: the AppArmor profile
//! (`process.apparmorProfile`, `exec --apparmor`) and SELinux label
//! (`process.selinuxLabel`, `exec --process-label`), both applied to the
//! next execve through /proc/self/attr, as runc does. A profile or label the
//! host cannot apply fails the container before anything exists (runc fails
//! too, later, or with the kernel's EINVAL); it is never ignored.

use std::path::Path;

use oci_spec::runtime::Process;

use crate::error::{Error, Result};

pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.starts_with('Y'))
        && Path::new("/proc/self/attr/apparmor").exists()
}

pub fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// The data of a (non-bind) mount with `linux.mountLabel` added as
/// `context="<label>"` when SELinux is on, as runc's
/// label.FormatMountLabel; unchanged when SELinux is off (runc ignores the
/// label then, and so do we). proc, sysfs and mqueue get no context, as in
/// runc.
pub fn mount_data(typ: &str, data: &str, spec: &oci_spec::runtime::Spec) -> String {
    let label = spec
        .linux()
        .as_ref()
        .and_then(|linux| linux.mount_label().as_deref());
    format_mount_label(typ, data, label, label.is_some() && selinux_enabled())
}

fn format_mount_label(typ: &str, data: &str, label: Option<&str>, selinux: bool) -> String {
    match label.filter(|label| !label.is_empty()) {
        Some(label) if selinux && !matches!(typ, "proc" | "sysfs" | "mqueue") => {
            let ctx = format!("context=\"{label}\"");
            if data.is_empty() {
                ctx
            } else {
                format!("{data},{ctx}")
            }
        }
        _ => data.to_string(),
    }
}

/// Refuses what this host cannot apply.
pub fn check(p: &Process) -> Result<()> {
    if let Some(profile) = p.apparmor_profile().as_deref().filter(|s| !s.is_empty())
        && !apparmor_enabled()
    {
        return Err(Error::Security(format!(
            "apparmor profile {profile:?} is set but AppArmor is not enabled on this host"
        )));
    }
    if let Some(label) = p.selinux_label().as_deref().filter(|s| !s.is_empty())
        && !selinux_enabled()
    {
        return Err(Error::Security(format!(
            "selinux label {label:?} is set but SELinux is not enabled on this host"
        )));
    }
    Ok(())
}

/// Right before execve: the profile and label the exec'd program gets,
/// written through a private procfs handle (libpathrs), never through the
/// container's /proc.
pub fn apply_on_exec(p: &Process) -> Result<()> {
    let profile = p.apparmor_profile().as_deref().filter(|s| !s.is_empty());
    let label = p.selinux_label().as_deref().filter(|s| !s.is_empty());
    if profile.is_none() && label.is_none() {
        return Ok(());
    }
    let procfs = crate::rootfs::procfs::Procfs::open()?;
    if let Some(profile) = profile {
        let value = format!("exec {profile}");
        // The per-LSM file first (Linux 5.1+), then the shared one.
        procfs
            .write_self("attr/apparmor/exec", &value)
            .or_else(|_| procfs.write_self("attr/exec", &value))
            .map_err(|e| Error::Security(format!("apparmor profile {profile:?}: {e}")))?;
    }
    if let Some(label) = label {
        procfs
            .write_self("attr/exec", label)
            .map_err(|e| Error::Security(format!("selinux label {label:?}: {e}")))?;
    }
    Ok(())
}
