//! `exec`: a new process in a running (or created) container. It joins every
//! namespace of the container's init (user first, mount last), its cgroup,
//! then forks once more so a joined pid namespace applies, and applies the
//! process's own rlimits, terminal, user, capabilities, no_new_privs and
//! seccomp before execve.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, execve, setsid};
use oci_spec::runtime::{LinuxNamespaceType, Process};

use super::channel::{self, Channel, Msg};
use super::init::exec_args;
use crate::cgroups::Manager;
use crate::error::{Context, Error, Result};
use crate::security;
use crate::sys::{self, Forked};

pub struct ExecSpawn<'a> {
    pub process: &'a Process,
    /// The container's `linux` section (personality, memory policy).
    pub linux: Option<&'a oci_spec::runtime::Linux>,
    /// The init's host pid: its /proc/<pid>/ns/* are joined.
    pub init_pid: Pid,
    pub namespaces: Vec<LinuxNamespaceType>,
    pub cgroup: &'a dyn Manager,
    pub seccomp: Option<security::seccomp::Program>,
    pub console: Option<OwnedFd>,
    pub preserve_fds: u32,
}

fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// Starts the process; returns its host pid once it is about to exec.
pub fn spawn(s: ExecSpawn) -> Result<Pid> {
    // Open every namespace first: a container that went away fails here.
    let mut joins: Vec<(LinuxNamespaceType, OwnedFd, PathBuf)> = Vec::new();
    for t in &s.namespaces {
        let path = PathBuf::from(format!("/proc/{}/ns/{}", s.init_pid, proc_name(*t)));
        let fd = nix::fcntl::open(
            &path,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ctx(Error::Process, || format!("open {}", path.display()))?;
        joins.push((*t, fd, path));
    }
    joins.sort_by_key(|(t, _, _)| match t {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Mount => 2,
        _ => 1,
    });
    let root_path = format!("/proc/{}/root", s.init_pid);
    let init_root = nix::fcntl::open(
        root_path.as_str(),
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(Error::Process, || format!("open {root_path}"))?;
    let (parent, child) = channel::pair()?;
    let _affinity = super::attrs::initial_affinity(s.process)?;
    match sys::fork().ctx(Error::Process, || "fork the exec process")? {
        Forked::Child => {
            drop(parent);
            if let Err(e) = stage1(&s, &joins, &init_root, &child)
                && child.send(&Msg::Error(e.to_string())).is_err()
            {
                eprintln!("ocirun: {e}");
            }
            sys::exit_now(1);
        }
        Forked::Parent(pid) => {
            drop(child);
            let r = drive(&s, &parent, pid);
            let _ = waitpid(pid, None);
            r
        }
    }
}

fn drive(s: &ExecSpawn, ch: &Channel, child: Pid) -> Result<Pid> {
    if let Err(e) = s.cgroup.apply(child) {
        let _ = kill(child, Signal::SIGKILL);
        return Err(e);
    }
    ch.send(&Msg::Go)?;
    let mut pid = None;
    loop {
        match ch.recv()? {
            Msg::Pid(p) => pid = Some(Pid::from_raw(p)),
            Msg::Ready => break,
            Msg::Error(e) => {
                if let Some(p) = pid {
                    let _ = kill(p, Signal::SIGKILL);
                }
                return Err(Error::Process(e));
            }
            m => {
                return Err(Error::Process(format!(
                    "unexpected {m:?} on the exec channel"
                )));
            }
        }
    }
    pid.ok_or_else(|| Error::Process("the exec process pid was never reported".into()))
}

fn stage1(
    s: &ExecSpawn,
    joins: &[(LinuxNamespaceType, OwnedFd, PathBuf)],
    init_root: &OwnedFd,
    ch: &Channel,
) -> Result<()> {
    // As the init: nothing in the container may read or write our memory,
    // fds or exe while our code runs there (execve undoes it).
    nix::sys::prctl::set_dumpable(false)
        .ctx(Error::Process, || "set the exec process non-dumpable")?;
    ch.expect(Msg::Go)?;
    for (t, fd, path) in joins {
        setns(fd, CloneFlags::from_bits_retain(*t as i32)).ctx(Error::Process, || {
            format!("join {t} namespace {}", path.display())
        })?;
        if *t == LinuxNamespaceType::User {
            super::become_root()?;
        }
    }
    // Joining the mount namespace put us at its root, which is not the
    // container's root when the init did not pivot (`--no-pivot`: a chroot
    // over a moved mount): take the init's root itself.
    nix::unistd::fchdir(init_root).ctx(Error::Process, || {
        format!("enter the root of container init {}", s.init_pid)
    })?;
    nix::unistd::chroot(".").ctx(Error::Process, || {
        format!("chroot into the root of container init {}", s.init_pid)
    })?;
    match sys::fork().ctx(Error::Process, || "fork into the container's pid namespace")? {
        Forked::Child => {
            let e = finish(s, ch).unwrap_err();
            Err(e)
        }
        Forked::Parent(pid) => {
            ch.send(&Msg::Pid(pid.as_raw()))?;
            sys::exit_now(0);
        }
    }
}

/// In every namespace of the container: set the process up and exec it.
fn finish(s: &ExecSpawn, ch: &Channel) -> Result<std::convert::Infallible> {
    let p = s.process;
    security::set_rlimits(p)?;
    setsid().ctx(Error::Process, || "setsid")?;
    if p.terminal().unwrap_or(false) {
        let sock = s.console.as_ref().ok_or_else(|| {
            Error::Process("a terminal was asked for but no --console-socket was given".into())
        })?;
        crate::tty::setup_console_exec(sock, p.console_size().as_ref())?;
    }
    let (exe, argv, envp) = exec_args(p)?;
    let nnp = p.no_new_privileges().unwrap_or(false);
    super::attrs::apply(p, s.linux, true)?;
    if !nnp && let Some(prog) = &s.seccomp {
        security::seccomp::load(prog)?;
    }
    let caps = p.capabilities().as_ref();
    security::apply_bounding(caps)?;
    let cwd_handle = super::open_cwd(p.cwd())?;
    security::switch_user(p)?;
    super::enter_cwd(&cwd_handle, p.cwd(), false)?;
    drop(cwd_handle);
    security::apply_caps(caps)?;
    if nnp {
        security::no_new_privs()?;
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        p.user().umask().unwrap_or(0o022),
    ));
    ch.send(&Msg::Ready)?;
    sys::cloexec_from(3 + s.preserve_fds).ctx(Error::Process, || "mark fds close-on-exec")?;
    sys::reset_signals().ctx(Error::Process, || "reset signal dispositions")?;
    security::lsm::apply_on_exec(p)?;
    if nnp && let Some(prog) = &s.seccomp {
        security::seccomp::load(prog)?;
    }
    let e = execve(&exe, &argv, &envp).unwrap_err();
    Err(Error::Process(format!(
        "exec {}: {e:?}",
        exe.to_string_lossy()
    )))
}
