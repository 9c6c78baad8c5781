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
