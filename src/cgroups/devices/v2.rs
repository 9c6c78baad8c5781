//! cgroup v2: the device rules as an eBPF program attached to the cgroup.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use oci_spec::runtime::LinuxDeviceCgroup;

use super::ebpf::{Insn, program};
use super::emulator::emulate;
use crate::error::{Context, Error, Result};
use crate::sys::bpf;

/// cgroup v2: compiles `rules` (after the emulator, see the module doc)
/// into a `BPF_PROG_TYPE_CGROUP_DEVICE` program (`ebpf.rs`), loads it,
/// attaches it to the cgroup directory `dir` with `BPF_F_ALLOW_MULTI`, then
/// detaches every device program that was attached there before, so an
/// update replaces the program and never stacks them. Programs we may not
/// open (an LSM's) are left alone, as runc does: another device program can
/// only restrict further.
pub fn apply_v2(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let target =
        emulate(rules).map_err(|e| Error::Cgroup(format!("devices of {}: {e}", dir.display())))?;
    let insns: Vec<u64> = program(&target.clean_rules())
        .iter()
        .map(Insn::encode)
        .collect();
    let d = dir.display();
    let cg = open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(Error::Cgroup, || format!("open cgroup {d}"))?;
    let old = bpf::prog_query(cg.as_fd(), bpf::ATTACH_CGROUP_DEVICE)
        .ctx(Error::Cgroup, || format!("list the device programs of {d}"))?;
    let prog = load(&insns).map_err(|(e, log)| {
        let log = if log.is_empty() {
            String::new()
        } else {
            format!(" (verifier log: {log})")
        };
        Error::Cgroup(format!("load device program for {d}: {e:?}{log}"))
    })?;
    bpf::prog_attach(
        cg.as_fd(),
        prog.as_fd(),
        bpf::ATTACH_CGROUP_DEVICE,
        bpf::F_ALLOW_MULTI,
    )
    .ctx(Error::Cgroup, || format!("attach device program to {d}"))?;
    for id in old {
        let fd = match bpf::prog_get_fd_by_id(id) {
            Ok(fd) => fd,
            // Gone meanwhile, or not ours to touch (LSM policy).
            Err(Errno::ENOENT | Errno::EPERM | Errno::EACCES) => continue,
            Err(e) => {
                return Err(e).ctx(Error::Cgroup, || {
                    format!("open old device program {id} of {d}")
                });
            }
        };
        bpf::prog_detach(cg.as_fd(), fd.as_fd(), bpf::ATTACH_CGROUP_DEVICE)
            .ctx(Error::Cgroup, || {
                format!("detach old device program {id} from {d}")
            })?;
    }
    Ok(())
}

/// Loads the program; on failure loads it once more with the verifier log
/// on, and returns the first error with that log on one line.
fn load(insns: &[u64]) -> std::result::Result<std::os::fd::OwnedFd, (Errno, String)> {
    let license = CString::new("Apache").expect("no NUL");
    let name = "ocirun_devices";
    let err = match bpf::prog_load_cgroup_device(insns, &license, name, None) {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    let mut buf = vec![0u8; 1 << 16];
    let _ = bpf::prog_load_cgroup_device(insns, &license, name, Some(&mut buf));
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let log = String::from_utf8_lossy(&buf[..end]);
    let mut log = log
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if log.len() > 2000 {
        let cut = log.ceil_char_boundary(log.len() - 2000);
        log = format!("...{}", &log[cut..]);
    }
    Err((err, log))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::ebpf::op;
    use super::super::tests::{rule, spec, sr};
    use super::super::{Rule, effective_rules};
    use super::*;

    /// The kernel's verifier accepts what we generate (needs root; skipped
    /// with a note elsewhere).
    #[test]
    fn kernel_loads_the_programs() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: not root");
            return;
        }
        let lists: Vec<Vec<Rule>> = vec![
            vec![],
            vec![rule("allow a *:* rwm")],
            vec![rule("allow a *:* rwm"), rule("deny c 1:1 m")],
            emulate(&effective_rules(&[], &[])).unwrap().clean_rules(),
            vec![rule("allow c 4294967295:* r"), rule("deny b *:7 rw")],
        ];
        for rules in lists {
            let insns: Vec<u64> = program(&rules).iter().map(Insn::encode).collect();
            if let Err((e, log)) = load(&insns) {
                panic!("load {rules:?}: {e}: {log}");
            }
        }
        // A broken program fails with the verifier's words in the error.
        let broken = [Insn::new(op::EXIT, 0, 0, 0, 0).encode()];
        let (e, log) = load(&broken).unwrap_err();
        assert_eq!(e, Errno::EACCES);
        assert!(log.contains("R0 !read_ok"), "{log}");
    }

    /// Attaching for real: the hybrid host's unified mount, or a pure v2
    /// host's root, takes device programs too.
    #[test]
    fn apply_v2_enforces_and_replaces() {
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let Some(root) = mounts
            .lines()
            .map(|line| line.split(' ').collect::<Vec<_>>())
            .find(|f| f.len() > 2 && f[2] == "cgroup2")
            .map(|f| f[1].to_string())
        else {
            eprintln!("skipped: no cgroup2 mount");
            return;
        };
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: not root");
            return;
        }
        let dir = Path::new(&root).join(format!("ocirun-devices-test-{}", std::process::id()));
        fs::create_dir(&dir).unwrap();
        let try_in = |script: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "echo $$ > {}/cgroup.procs && {script}",
                    dir.display()
                ))
                .status()
                .unwrap()
                .success()
        };
        let result = std::panic::catch_unwind(|| {
            let rules = vec![spec(r#"{"allow":true,"access":"rwm"}"#), sr("deny c 1:3 w")];
            apply_v2(&dir, &rules).unwrap();
            apply_v2(&dir, &rules).unwrap();
            let cg = open(&dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
            let ids = bpf::prog_query(cg.as_fd(), bpf::ATTACH_CGROUP_DEVICE).unwrap();
            assert_eq!(ids.len(), 1, "programs stack: {ids:?}");
            assert!(try_in("cat /dev/null"));
            assert!(!try_in("echo x > /dev/null"));
            // Replaced by one that allows the write again.
            apply_v2(&dir, &rules[..1]).unwrap();
            assert!(try_in("echo x > /dev/null"));
            let ids = bpf::prog_query(cg.as_fd(), bpf::ATTACH_CGROUP_DEVICE).unwrap();
            assert_eq!(ids.len(), 1);
        });
        fs::remove_dir(&dir).unwrap();
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
    }
}
