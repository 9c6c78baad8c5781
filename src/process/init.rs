//! The container init, top-down in spec order: root filesystem, hostname,
//! sysctl, readonly/masked paths, rlimits, terminal, user and capabilities,
//! then wait for `start` and exec.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::stat::{Mode, umask};
use nix::unistd::{AccessFlags, access, execve, setsid};
use oci_spec::runtime::Process;

use super::Spawn;
use super::channel::{Channel, Msg};
use crate::error::{Context, Error, Result};
use crate::rootfs;
use crate::security;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub(super) fn run(s: &Spawn, cgroupns: bool, userns: bool, ch: &Channel) -> Result<()> {
    let spec = &s.bundle.spec;
    let process = spec.process().as_ref().expect("validated");
    // No process of the container may read or write our memory, fds or exe
    // while we run our code in its namespaces; execve makes the container's
    // program dumpable again.
    nix::sys::prctl::set_dumpable(false).ctx(Error::Process, || "set the init non-dumpable")?;
    umask(Mode::empty());
    // Our pid as the host sees it, while the host's /proc is still mounted
    // here: a seccomp listener is told which process it serves.
    let host_pid: i32 = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse().ok())
        .unwrap_or(0);

    let hooks = spec.hooks().as_ref();
    let annotations = spec.annotations().clone().unwrap_or_default();
    let state = |status: &str| {
        crate::hooks::state_json(s.id, status, host_pid, &s.bundle.dir, &annotations)
    };
    rootfs::prepare(
        &rootfs::Plan {
            spec,
            rootfs: &s.bundle.rootfs,
            bundle: &s.bundle.dir,
            userns,
            cgroupns,
            cgroups: s.cgroup.hierarchies(),
            no_pivot: s.no_pivot,
        },
        &mut || {
            use crate::hooks::Kind;
            if crate::hooks::any(hooks, &[Kind::Prestart, Kind::CreateRuntime]) {
                ch.send(&Msg::RuntimeHooks)?;
                ch.expect(Msg::HooksDone)?;
            }
            // In the container's namespaces, before pivot_root.
            crate::hooks::run(hooks, Kind::CreateContainer, &state("creating"))
        },
    )?;

    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).ctx(Error::Process, || format!("sethostname {h:?}"))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        crate::sys::setdomainname(d).ctx(Error::Process, || format!("setdomainname {d:?}"))?;
    }
    let linux = spec.linux().as_ref().expect("validated");
    let sysctls = linux.sysctl().as_ref().filter(|s| !s.is_empty());
    // A private, verified procfs for our writes (CVE-2025-52881), only when
    // there is something to write.
    let procfs = if sysctls.is_some() || process.oom_score_adj().is_some() {
        Some(rootfs::procfs::Procfs::open()?)
    } else {
        None
    };
    for (key, value) in sysctls.into_iter().flatten() {
        procfs.as_ref().expect("opened").write_sysctl(key, value)?;
    }
    rootfs::finalize(spec)?;

    if let Some(adj) = process.oom_score_adj() {
        procfs
            .as_ref()
            .expect("opened")
            .write_self("oom_score_adj", &adj.to_string())?;
    }
    drop(procfs);
    security::set_rlimits(process)?;

    setsid().ctx(Error::Process, || "setsid")?;
    if process.terminal().unwrap_or(false) {
        let sock = s.console.as_ref().ok_or_else(|| {
            Error::Process("process.terminal is true but no --console-socket was given".into())
        })?;
        crate::tty::setup_console(sock, process.console_size().as_ref())?;
    }

    let (exe, argv, mut envp) = exec_args(process)?;
    if s.listen_fds > 0 {
        // The pid the process will have, as its own pid namespace sees it.
        let pid = nix::unistd::getpid();
        envp.push(cstring(&format!("LISTEN_FDS={}", s.listen_fds))?);
        envp.push(cstring(&format!("LISTEN_PID={pid}"))?);
    }

    let nnp = process.no_new_privileges().unwrap_or(false);
    super::attrs::apply(process, Some(linux), false)?;
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it now,
    // before the capabilities go (runc does the same).
    if !nnp {
        load_seccomp(s, host_pid)?;
    }
    let caps = process.capabilities().as_ref();
    security::apply_bounding(caps)?;
    let cwd = process.cwd();
    // Resolved as root (a cwd only root can search still works), entered
    // again as the user if that first attempt failed.
    let cwd_handle = super::open_cwd(cwd)?;
    let early_cd = nix::unistd::fchdir(&cwd_handle).is_ok();
    security::switch_user(process)?;
    super::enter_cwd(&cwd_handle, cwd, early_cd)?;
    drop(cwd_handle);
    security::apply_caps(caps)?;
    if nnp {
        security::no_new_privs()?;
    }
    umask(Mode::from_bits_truncate(
        process.user().umask().unwrap_or(0o022),
    ));

    ch.send(&Msg::Ready)?;
    // Block until `start` writes a byte into the fifo.
    let mut b = [0u8; 1];
    loop {
        match nix::unistd::read(s.fifo.as_fd(), &mut b) {
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::Process(format!("read the exec fifo: {e:?}"))),
        }
    }
    // In the container, after `start`, before the process runs.
    crate::hooks::run(hooks, crate::hooks::Kind::StartContainer, &state("created"))?;
    crate::sys::cloexec_from(3 + s.listen_fds + s.preserve_fds)
        .ctx(Error::Process, || "mark fds close-on-exec")?;
    crate::sys::reset_signals().ctx(Error::Process, || "reset signal dispositions")?;
    security::lsm::apply_on_exec(process)?;
    // As late as it can be: nothing of our setup runs under the filter.
    if nnp {
        load_seccomp(s, host_pid)?;
    }
    let e = execve(&exe, &argv, &envp).unwrap_err();
    Err(Error::Process(format!(
        "exec {}: {e:?}",
        exe.to_string_lossy()
    )))
}

/// The executable (looked up in the container's PATH), argv and envp of a
/// process, checked before anything is reported ready.
pub(crate) fn exec_args(p: &Process) -> Result<(CString, Vec<CString>, Vec<CString>)> {
    let env = environment(p);
    let exe = find_executable(p, &env)?;
    let argv = p
        .args()
        .iter()
        .flatten()
        .map(|a| cstring(a))
        .collect::<Result<_>>()?;
    let envp = env.iter().map(|e| cstring(e)).collect::<Result<_>>()?;
    Ok((exe, argv, envp))
}

pub(crate) fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Spec(format!("{s:?} contains a NUL byte")))
}

/// process.env, plus HOME from the container's /etc/passwd when it is unset.
fn environment(p: &Process) -> Vec<String> {
    let mut env = p.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = home_of(p.user().uid()).unwrap_or_else(|| "/".into());
        env.push(format!("HOME={home}"));
    }
    env
}

fn home_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
    })
}

/// args[0] as exec will find it: a path, or a name looked up in the
/// container's PATH (from process.env).
fn find_executable(p: &Process, env: &[String]) -> Result<CString> {
    let arg0 = p
        .args()
        .as_ref()
        .and_then(|a| a.first())
        .expect("validated");
    if arg0.contains('/') {
        let p = Path::new(arg0);
        return match access(p, AccessFlags::X_OK) {
            Ok(()) if p.metadata().is_ok_and(|m| m.is_file()) => cstring(arg0),
            Ok(()) => Err(Error::Process(format!(
                "executable {arg0} is not a regular file"
            ))),
            Err(e) => Err(Error::Process(format!("executable {arg0}: {e:?}"))),
        };
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = PathBuf::from(dir).join(arg0);
        if access(&cand, AccessFlags::X_OK).is_ok() && cand.metadata().is_ok_and(|m| m.is_file()) {
            return cstring(&cand.to_string_lossy());
        }
    }
    Err(Error::Process(format!(
        "executable {arg0:?} not found in the container's PATH {path}"
    )))
}

/// Loads the seccomp filter; with SCMP_ACT_NOTIFY hands the listener fd to
/// `listenerPath` with the container's process state, as runc does.
fn load_seccomp(s: &Spawn, host_pid: i32) -> Result<()> {
    let Some(prog) = &s.seccomp else {
        return Ok(());
    };
    let Some(fd) = security::seccomp::load(prog)? else {
        return Ok(());
    };
    let sock = s
        .seccomp_listener
        .as_ref()
        .ok_or_else(|| Error::Security("seccomp: a listener fd but no listener socket".into()))?;
    let seccomp = s
        .bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref());
    let state = serde_json::json!({
        "ociVersion": crate::spec::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": host_pid,
        "metadata": seccomp.and_then(|s| s.listener_metadata().clone()).unwrap_or_default(),
        "state": {
            "ociVersion": crate::spec::OCI_VERSION,
            "id": s.id,
            "status": "creating",
            "pid": host_pid,
            "bundle": s.bundle.dir,
            "annotations": s.bundle.spec.annotations().clone().unwrap_or_default(),
        }
    });
    crate::tty::send_fd(sock, &state.to_string(), &fd)
}
