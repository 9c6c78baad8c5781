//! The last steps of every container process, the init's and exec's alike.
//!
//! `prepare` does everything the runtime needs for itself while it still
//! runs unconfined: the executable looked up in the container's PATH, the
//! environment (HOME from the container's /etc/passwd), the cwd resolved
//! inside the root and entered. `exec` then marks our fds close-on-exec,
//! resets signals, sets the LSM labels and the umask, and only then takes
//! the process's identity with the seccomp filter as late as the spec
//! allows: without no_new_privs the filter must be loaded while
//! CAP_SYS_ADMIN is still held, so setgroups/setresgid/setresuid, capset
//! (and the ambient prctl) and execve follow it; with no_new_privs only
//! execve does. docs/security.md lists those syscalls.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::unistd::{AccessFlags, access, execve};
use oci_spec::runtime::Process;

use crate::error::{Context, Error, Result};
use crate::security;
use crate::security::seccomp::Program;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the process execs, resolved before anything is confined.
pub(crate) struct Prepared {
    exe: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: pathrs::Handle,
    /// The cwd was entered (and checked) as root; otherwise it is entered
    /// after the user switch.
    cwd_entered: bool,
}

/// The seccomp filter of a process and, for SCMP_ACT_NOTIFY, the socket the
/// listener fd goes to with the state runc sends.
pub(crate) struct Filter<'a> {
    pub program: &'a Program,
    pub listener: Option<(&'a OwnedFd, String)>,
}

impl Filter<'_> {
    /// Loads the filter into this thread and hands the listener fd over.
    pub fn load(&self) -> Result<()> {
        let Some(fd) = security::seccomp::load(self.program)? else {
            return Ok(());
        };
        let (sock, state) = self.listener.as_ref().ok_or_else(|| {
            Error::Security("seccomp: a listener fd but no listenerPath socket".into())
        })?;
        crate::sys::fd::send_fd(sock.as_fd(), state, fd.as_fd())
            .ctx(Error::Security, || "seccomp: send the listener fd")
    }
}

/// Looks everything up and enters the cwd, as root, before the filter.
/// `extra_env` (LISTEN_FDS/LISTEN_PID) is appended to process.env.
pub(crate) fn prepare(p: &Process, extra_env: &[String]) -> Result<Prepared> {
    let mut env = environment(p);
    env.extend(extra_env.iter().cloned());
    let exe = find_executable(p, &env)?;
    let argv = p
        .args()
        .iter()
        .flatten()
        .map(|a| cstring(a))
        .collect::<Result<_>>()?;
    let envp = env.iter().map(|e| cstring(e)).collect::<Result<_>>()?;
    let cwd = super::open_cwd(p.cwd())?;
    // Entered as root: a cwd only root can search still works, and the
    // check below runs unconfined. If that fails (no CAP_DAC_READ_SEARCH
    // in a user namespace), the cwd is entered again as the user.
    let cwd_entered = nix::unistd::fchdir(&cwd).is_ok();
    if cwd_entered {
        super::enter_cwd(&cwd, p.cwd(), true)?;
    }
    Ok(Prepared {
        exe,
        argv,
        envp,
        cwd,
        cwd_entered,
    })
}

/// From here the process becomes the container's program: fds from
/// `3 + keep_fds` close-on-exec, default signals, LSM labels, umask, then
/// bounding set, user, capabilities, no_new_privs and the filter (unless it
/// was loaded earlier: `filter` is None then), and execve.
pub(crate) fn exec(
    p: &Process,
    prep: Prepared,
    keep_fds: u32,
    filter: Option<&Filter>,
) -> Result<Infallible> {
    cloexec_from(3 + keep_fds)?;
    crate::sys::reset_signals(security::ignored_signals())
        .ctx(Error::Process, || "reset signal dispositions")?;
    security::lsm::apply_on_exec(p)?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        p.user().umask().unwrap_or(0o022),
    ));
    let caps = p.capabilities().as_ref();
    security::apply_bounding(caps)?;
    nix::sys::prctl::set_keepcaps(true).ctx(Error::Security, || "prctl PR_SET_KEEPCAPS")?;
    let nnp = p.no_new_privileges().unwrap_or(false);
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: now, before
    // the identity changes (runc does the same).
    if !nnp && let Some(f) = filter {
        f.load()?;
    }
    // --- Under the filter when no_new_privs is false: only the identity
    // syscalls and execve from here (docs/security.md).
    security::switch_user(p)?;
    if !prep.cwd_entered {
        super::enter_cwd(&prep.cwd, p.cwd(), false)?;
    }
    drop(prep.cwd);
    security::apply_caps(caps)?;
    if nnp {
        security::no_new_privs()?;
        if let Some(f) = filter {
            f.load()?;
        }
    }
    let e = execve(&prep.exe, &prep.argv, &prep.envp).unwrap_err();
    Err(Error::Process(exec_error(&prep.exe, e)))
}

/// Marks our fds close-on-exec: close_range, or, where it is refused (an
/// older kernel, a caller's seccomp filter), fcntl on every open fd.
fn cloexec_from(first: u32) -> Result<()> {
    match crate::sys::fd::cloexec_from(first) {
        Ok(()) => Ok(()),
        Err(_) => crate::sys::fd::cloexec_each_from(first)
            .ctx(Error::Process, || "mark fds close-on-exec"),
    }
}

/// The words runc uses for a failed exec, which Docker and podman match.
fn exec_error(exe: &CString, e: nix::errno::Errno) -> String {
    let exe = exe.to_string_lossy();
    match e {
        nix::errno::Errno::ENOENT => format!("exec {exe}: no such file or directory"),
        nix::errno::Errno::EACCES => format!("exec {exe}: permission denied"),
        e => format!("exec {exe}: {e:?}"),
    }
}

pub(crate) fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Spec(format!("{s:?} contains a NUL byte")))
}

/// process.env, each key once with its last value (in the place it first
/// appeared), plus HOME from the container's /etc/passwd when it is unset.
fn environment(p: &Process) -> Vec<String> {
    let env = dedup_env(p.env().iter().flatten().cloned());
    if env.iter().any(|e| e.starts_with("HOME=")) {
        return env;
    }
    let home = home_of(p.user().uid()).unwrap_or_else(|| "/".into());
    let mut env = env;
    env.push(format!("HOME={home}"));
    env
}

/// Environment entries with repeated keys folded: the last value wins.
pub(crate) fn dedup_env(entries: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in entries {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        match out
            .iter_mut()
            .find(|o| o.split_once('=').map_or(o.as_str(), |(k, _)| k) == key)
        {
            Some(slot) => *slot = e,
            None => out.push(e),
        }
    }
    out
}

fn home_of(uid: u32) -> Option<String> {
    let passwd = crate::sys::fd::read_text("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
    })
}

/// args[0] as exec will find it: a path, or a name looked up in the
/// container's PATH (from process.env). The messages carry runc's words,
/// which Docker and podman match to pick exit codes 126 and 127.
fn find_executable(p: &Process, env: &[String]) -> Result<CString> {
    let arg0 = p
        .args()
        .as_ref()
        .and_then(|a| a.first())
        .expect("validated");
    if arg0.contains('/') {
        let path = Path::new(arg0);
        return match access(path, AccessFlags::X_OK) {
            Ok(()) if path.metadata().is_ok_and(|m| m.is_file()) => cstring(arg0),
            Ok(()) => Err(Error::Process(format!(
                "exec {arg0}: permission denied (not a regular file)"
            ))),
            Err(nix::errno::Errno::ENOENT) => Err(Error::Process(format!(
                "exec: \"{arg0}\": stat {arg0}: no such file or directory"
            ))),
            Err(nix::errno::Errno::EACCES) => Err(Error::Process(format!(
                "exec: \"{arg0}\": permission denied"
            ))),
            Err(e) => Err(e).ctx(Error::Process, || format!("exec {arg0}")),
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
        "exec: \"{arg0}\": executable file not found in $PATH ({path})"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_env_keys_take_the_last_value_in_the_first_place() {
        let e = dedup_env(
            ["A=1", "B=2", "A=3", "C", "C=4", "B=2=x"]
                .into_iter()
                .map(String::from),
        );
        assert_eq!(e, ["A=3", "B=2=x", "C=4"]);
    }
}
