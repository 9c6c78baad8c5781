//! cgroup v1: the device rules written to `devices.deny` / `devices.allow`.

use std::fs;
use std::path::Path;

use oci_spec::runtime::LinuxDeviceCgroup;

use super::emulator::{Emulator, emulate};
use crate::error::{Context, Error, Result};

/// cgroup v1: writes devices.deny / devices.allow in `dir` (a devices
/// hierarchy cgroup directory) so that the cgroup ends with exactly `rules`
/// (a new cgroup starts with its parent's list). Only the difference from
/// the current `devices.list` is written, and the list is read back to
/// check the result, as runc does.
pub(super) fn apply_v1(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
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
    let text = crate::sys::fd::read_text(&path)
        .ctx(Error::Cgroup, || format!("read {}", path.display()))?;
    Emulator::from_list(&text).map_err(|e| Error::Cgroup(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{spec, sr};
    use super::*;

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
            let list = crate::sys::fd::read_text(dir.join("devices.list")).unwrap();
            let mut lines: Vec<&str> = list.lines().collect();
            lines.sort();
            assert_eq!(lines, ["b 8:* m", "c 1:3 rw"]);
            apply_v1(&dir, &[sr("allow c 1:3 r")]).unwrap();
            assert_eq!(
                crate::sys::fd::read_text(dir.join("devices.list")).unwrap(),
                "c 1:3 r\n"
            );
            apply_v1(&dir, &[spec(r#"{"allow":true,"access":"rwm"}"#)]).unwrap();
            assert_eq!(
                crate::sys::fd::read_text(dir.join("devices.list")).unwrap(),
                "a *:* rwm\n"
            );
        });
        fs::remove_dir(&dir).unwrap();
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
    }
}
