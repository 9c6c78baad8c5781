//! Linux security modules for the container's process: the AppArmor profile
//! (`process.apparmorProfile`, `exec --apparmor`) and SELinux label
//! (`process.selinuxLabel`, `exec --process-label`), both applied to the
//! next execve through /proc/self/attr, as runc does. A profile or label the
//! host cannot apply fails the container before anything exists (runc fails
//! too, later, or with the kernel's EINVAL); it is never ignored.

use std::path::Path;

use oci_spec::runtime::Process;

use crate::error::{Error, Result, io_text};

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
        .and_then(|l| l.mount_label().as_deref());
    format_mount_label(typ, data, label, label.is_some() && selinux_enabled())
}

fn format_mount_label(typ: &str, data: &str, label: Option<&str>, selinux: bool) -> String {
    match label.filter(|l| !l.is_empty()) {
        Some(l) if selinux && !matches!(typ, "proc" | "sysfs" | "mqueue") => {
            let ctx = format!("context=\"{l}\"");
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

/// Right before execve: the profile and label the exec'd program gets.
pub fn apply_on_exec(p: &Process) -> Result<()> {
    if let Some(profile) = p.apparmor_profile().as_deref().filter(|s| !s.is_empty()) {
        let file = if Path::new("/proc/self/attr/apparmor/exec").exists() {
            "/proc/self/attr/apparmor/exec"
        } else {
            "/proc/self/attr/exec"
        };
        write_attr(file, &format!("exec {profile}"))?;
    }
    if let Some(label) = p.selinux_label().as_deref().filter(|s| !s.is_empty()) {
        write_attr("/proc/self/attr/exec", label)?;
    }
    Ok(())
}

/// Writes a /proc/self/attr file through an fd checked to be on a real
/// procfs (a container's /proc could be anything its image made it).
fn write_attr(file: &str, value: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .map_err(|e| Error::Security(format!("open {file}: {}", io_text(&e))))?;
    let st = nix::sys::statfs::fstatfs(&f)
        .map_err(|e| Error::Security(format!("statfs {file}: {e:?}")))?;
    if st.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(Error::Security(format!("{file} is not on procfs")));
    }
    f.write_all(value.as_bytes())
        .map_err(|e| Error::Security(format!("write {value:?} to {file}: {}", io_text(&e))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_label_is_added_only_with_selinux() {
        let l = Some("system_u:object_r:container_file_t:s0:c1,c2");
        assert_eq!(
            format_mount_label("tmpfs", "mode=755", l, true),
            "mode=755,context=\"system_u:object_r:container_file_t:s0:c1,c2\""
        );
        assert_eq!(
            format_mount_label("devpts", "", l, true),
            "context=\"system_u:object_r:container_file_t:s0:c1,c2\""
        );
        assert_eq!(
            format_mount_label("tmpfs", "mode=755", l, false),
            "mode=755"
        );
        assert_eq!(format_mount_label("proc", "", l, true), "");
        assert_eq!(format_mount_label("mqueue", "", l, true), "");
        assert_eq!(
            format_mount_label("tmpfs", "size=1k", None, true),
            "size=1k"
        );
    }
}
