//! `exec`: a new process in a running (or created) container. It joins every
//! namespace of the container's init (user first, mount last), its cgroup,
//! then forks once more so a joined pid namespace applies, sets its rlimits
//! and terminal, and ends in the same `finalize` sequence as the init. The
//! caller learns the outcome from the channel: an error, or EOF once the
//! process has exec'd (the socket is close-on-exec).

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, setsid};
use oci_spec::runtime::{LinuxNamespaceType, Process};

use super::channel::{self, Channel, Msg};
use super::finalize::{self, Filter};
use crate::cgroups::Manager;
use crate::error::{Context, Error, Result};
use crate::security;
use crate::sys::{self, Forked};

pub struct ExecSpawn<'a> {
    pub process: &'a Process,
    /// The container's `linux` section (personality, memory policy).
    pub linux: Option<&'a oci_spec::runtime::Linux>,
    /// The init's host pid: its `/proc/<pid>/ns/*` are joined.
    pub init_pid: Pid,
    pub namespaces: Vec<LinuxNamespaceType>,
    pub cgroup: &'a dyn Manager,
    pub seccomp: Option<security::seccomp::Program>,
    pub console: Option<OwnedFd>,
    pub preserve_fds: u32,
    /// The connected `listenerPath` socket, for SCMP_ACT_NOTIFY, and the
    /// container state sent with the listener fd.
    pub seccomp_listener: Option<(OwnedFd, serde_json::Value)>,
    /// The state dir's lock, closed in the children.
    pub(crate) lock: Option<&'a crate::sys::fd::Lock>,
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
            if let Some(lock) = s.lock {
                lock.close_in_child();
            }
            channel::report_panics(&child, None);
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

/// Reads the channel until EOF: the intermediate's `Pid`, then `Ready` and
/// EOF once the process has exec'd, or an `Error` at any step.
fn drive(s: &ExecSpawn, ch: &Channel, child: Pid) -> Result<Pid> {
    if let Err(e) = s.cgroup.apply(child) {
        let _ = kill(child, Signal::SIGKILL);
        return Err(e);
    }
    ch.send(&Msg::Go)?;
    let mut pid = None;
    let mut ready = false;
    let fail = |pid: Option<Pid>, e: Error| {
        if let Some(p) = pid {
            let _ = kill(p, Signal::SIGKILL);
        }
        Err(e)
    };
    loop {
        match ch.recv_or_eof() {
            Ok(Some(Msg::Pid(p))) => pid = Some(Pid::from_raw(p)),
            Ok(Some(Msg::Ready)) => ready = true,
            Ok(Some(Msg::Error(e))) => return fail(pid, Error::Process(e)),
            Ok(Some(m)) => {
                return fail(
                    pid,
                    Error::Process(format!("unexpected {m:?} on the exec channel")),
                );
            }
            Ok(None) => break,
            Err(e) => return fail(pid, e),
        }
    }
    match pid {
        Some(p) if ready => Ok(p),
        Some(p) => fail(
            Some(p),
            Error::Process("the exec process exited during setup without a word".into()),
        ),
        None => Err(Error::Process(
            "the exec process pid was never reported".into(),
        )),
    }
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
    // The process learns its host pid (for a seccomp listener) from us.
    let pid_pipe = match &s.seccomp_listener {
        Some(_) => {
            Some(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(Error::Process, || "pipe")?)
        }
        None => None,
    };
    match sys::fork().ctx(Error::Process, || "fork into the container's pid namespace")? {
        Forked::Child => {
            let host_pid = match pid_pipe {
                Some((read_end, write_end)) => {
                    drop(write_end);
                    let mut b = [0u8; 4];
                    nix::unistd::read(&read_end, &mut b)
                        .ctx(Error::Process, || "read our host pid")?;
                    i32::from_ne_bytes(b)
                }
                None => 0,
            };
            let Err(e) = finish(s, ch, host_pid);
            Err(e)
        }
        Forked::Parent(pid) => {
            if let Some((_, write_end)) = &pid_pipe {
                let _ = nix::unistd::write(write_end, &pid.as_raw().to_ne_bytes());
            }
            ch.send(&Msg::Pid(pid.as_raw()))?;
            sys::exit_now(0);
        }
    }
}

/// In every namespace of the container: set the process up and exec it.
fn finish(s: &ExecSpawn, ch: &Channel, host_pid: i32) -> Result<std::convert::Infallible> {
    let p = s.process;
    security::set_rlimits(p)?;
    setsid().ctx(Error::Process, || "setsid")?;
    if p.terminal().unwrap_or(false) {
        let sock = s.console.as_ref().ok_or_else(|| {
            Error::Process("a terminal was asked for but no --console-socket was given".into())
        })?;
        crate::tty::setup_console_exec(sock, p.console_size().as_ref())?;
    }
    let prepared = finalize::prepare(p, &[])?;
    super::attrs::apply(p, s.linux, true)?;
    let filter = s.seccomp.as_ref().map(|program| Filter {
        program,
        listener: s.seccomp_listener.as_ref().map(|(sock, state)| {
            let mut state = state.clone();
            state["pid"] = host_pid.into();
            (sock, state.to_string())
        }),
    });
    // Set up; what fails from here still reaches the caller, which reads
    // until the channel closes on execve.
    ch.send(&Msg::Ready)?;
    finalize::exec(p, prepared, s.preserve_fds, filter.as_ref())
}
