//! Starting the container's init: namespaces, the parent <-> child channel,
//! and (in `init`) the sequence the init runs before it execs.
//!
//! Without a user, time or joined pid namespace the parent clones the init
//! directly with its new namespaces (one process, no re-exec). Otherwise an
//! intermediate child joins and unshares in the order the kernel needs (user
//! first, so the other namespaces belong to it) and forks the init.

pub(crate) mod attrs;
pub mod channel;
pub mod exec;
mod finalize;
mod init;
pub(crate) mod netdev;

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid, setresgid, setresuid};
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType};

use crate::cgroups::Manager;
use crate::error::{Context, Error, Result};
use crate::spec::Bundle;
use crate::sys::{self, Forked};
use channel::{Channel, Msg};

/// What the init needs from the parent, inherited across fork.
pub struct Spawn<'a> {
    pub bundle: &'a Bundle,
    pub cgroup: &'a dyn Manager,
    /// The exec fifo opened O_RDWR: the init blocks reading it until `start`.
    pub fifo: OwnedFd,
    /// The result fifo opened O_RDWR (close-on-exec): `start` reads the
    /// init's error from it, or EOF once the process has exec'd.
    pub result: OwnedFd,
    /// The connected `--console-socket`, when process.terminal is true.
    pub console: Option<OwnedFd>,
    pub preserve_fds: u32,
    /// Socket-activation fds (LISTEN_FDS) passed to us: fds 3..3+N, before
    /// the preserved ones, with LISTEN_FDS/LISTEN_PID set in the process env.
    pub listen_fds: u32,
    pub no_pivot: bool,
    pub id: &'a str,
    /// The compiled seccomp filter, if the spec has one.
    pub seccomp: Option<crate::security::seccomp::Program>,
    /// The connected `listenerPath` socket, for SCMP_ACT_NOTIFY.
    pub seccomp_listener: Option<OwnedFd>,
    /// The state dir's lock, closed in the children.
    pub(crate) lock: Option<&'a crate::sys::fd::Lock>,
    /// Without privilege: `setgroups` is denied before a `gid_map` written
    /// directly; maps of other ids go through newuidmap/newgidmap.
    pub rootless: bool,
    pub map_tools: crate::rootless::MapTools,
    /// What `type: cgroup` mounts show, when not the container's own
    /// cgroups (rootless: the runtime's cgroup where none was writable).
    pub cgroup_view: Option<Vec<crate::cgroups::Hierarchy>>,
}

/// The process's cwd resolved inside the container's root (`/` after
/// pivot_root, or after joining its mount namespace) by libpathrs: no
/// symlink, `..` or /proc magic link (CVE-2024-21626's /proc/self/fd/N) can
/// take it outside.
pub(crate) fn open_cwd(cwd: &std::path::Path) -> Result<pathrs::Handle> {
    let root = pathrs::Root::open("/").ctx(Error::Process, || "open the container root")?;
    root.resolve(cwd).ctx(Error::Process, || {
        format!("resolve cwd {} inside the container", cwd.display())
    })
}

/// Makes `h` the cwd (unless `entered` already) and checks that the kernel
/// sees it inside the container's root.
pub(crate) fn enter_cwd(h: &pathrs::Handle, cwd: &std::path::Path, entered: bool) -> Result<()> {
    if !entered {
        nix::unistd::fchdir(h).ctx(Error::Process, || format!("chdir to cwd {}", cwd.display()))?;
    }
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        other => Err(Error::Process(format!(
            "cwd {} is not inside the container root: {other:?}",
            cwd.display()
        ))),
    }
}

fn ns_flag(t: LinuxNamespaceType) -> CloneFlags {
    CloneFlags::from_bits_retain(t as i32)
}

/// The namespaces of a spec: which are new, which are joined by path.
struct NsPlan {
    new: CloneFlags,
    joins: Vec<(LinuxNamespaceType, OwnedFd, PathBuf)>,
}

impl NsPlan {
    fn from_bundle(b: &Bundle) -> Result<NsPlan> {
        let mut plan = NsPlan {
            new: CloneFlags::empty(),
            joins: Vec::new(),
        };
        let linux = b.spec.linux().as_ref().expect("validated");
        for ns in linux.namespaces().iter().flatten() {
            match ns.path() {
                None => plan.new |= ns_flag(ns.typ()),
                Some(p) => {
                    let fd = nix::fcntl::open(
                        p,
                        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                        nix::sys::stat::Mode::empty(),
                    )
                    .ctx(Error::Process, || {
                        format!("open {} namespace {}", ns.typ(), p.display())
                    })?;
                    plan.joins.push((ns.typ(), fd, p.clone()));
                }
            }
        }
        // User namespace first (the others may belong to it), mount last.
        plan.joins.sort_by_key(|(t, _, _)| match t {
            LinuxNamespaceType::User => 0,
            LinuxNamespaceType::Mount => 2,
            _ => 1,
        });
        Ok(plan)
    }

    fn is_new(&self, t: LinuxNamespaceType) -> bool {
        self.new.contains(ns_flag(t))
    }

    fn joins(&self, t: LinuxNamespaceType) -> bool {
        self.joins.iter().any(|(x, _, _)| *x == t)
    }

    fn two_stage(&self) -> bool {
        self.is_new(LinuxNamespaceType::User)
            || self.joins(LinuxNamespaceType::User)
            || self.is_new(LinuxNamespaceType::Time)
            || self.joins(LinuxNamespaceType::Time)
            || self.joins(LinuxNamespaceType::Pid)
    }

    fn setns_all(&self, skip_user: bool) -> Result<()> {
        for (t, fd, path) in &self.joins {
            if skip_user && *t == LinuxNamespaceType::User {
                continue;
            }
            setns(fd, ns_flag(*t)).ctx(Error::Process, || {
                format!("join {t} namespace {}", path.display())
            })?;
        }
        Ok(())
    }
}

/// Starts the container's init and returns its host pid once it is set up and
/// waiting for `start`. On failure nothing of the child is left running (the
/// caller removes the cgroup and state dir).
pub fn spawn(s: Spawn) -> Result<Pid> {
    let plan = NsPlan::from_bundle(s.bundle)?;
    let two_stage = plan.two_stage();
    let (parent, child) = channel::pair()?;
    let direct = if two_stage {
        CloneFlags::empty()
    } else {
        plan.new - (CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWCGROUP)
    };
    match sys::clone_process(direct.bits()).ctx(Error::Process, || "clone the container init")? {
        Forked::Child => {
            drop(parent);
            if let Some(lock) = s.lock {
                lock.close_in_child();
            }
            channel::report_panics(&child, Some(&s.result));
            let r = if two_stage {
                stage1(&s, &plan, &child)
            } else {
                direct_child(&s, &plan, &child)
            };
            if let Err(e) = r
                && child.send(&Msg::Error(e.to_string())).is_err()
            {
                // Nobody listens any more (a startContainer hook after
                // `create` returned): the container's stderr is all we have.
                eprintln!("ocirun: {e}");
            }
            sys::exit_now(1);
        }
        Forked::Parent(pid) => {
            drop(child);
            let r = drive(&s, &parent, pid, two_stage);
            if r.is_err() {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
            }
            r
        }
    }
}

/// Parent side of the setup conversation.
fn drive(s: &Spawn, ch: &Channel, child: Pid, two_stage: bool) -> Result<Pid> {
    s.cgroup.apply(child)?;
    ch.send(&Msg::Go)?;
    let mut init = if two_stage { None } else { Some(child) };
    let mut ready = false;
    let mut hooks_waiting = false;
    loop {
        match ch.recv()? {
            Msg::MapRequest => {
                let linux = s.bundle.spec.linux().as_ref().expect("validated");
                // gid_map after setgroups is settled; uid_map last. An
                // unprivileged writer may map its own gid only once
                // setgroups is denied.
                let (uids, gids) = (
                    linux.uid_mappings().as_deref().unwrap_or_default(),
                    linux.gid_mappings().as_deref().unwrap_or_default(),
                );
                match &s.map_tools.gid {
                    Some(tool) => crate::rootless::run_tool(tool, child.as_raw(), gids)?,
                    None => {
                        if s.rootless {
                            let path = format!("/proc/{child}/setgroups");
                            crate::sys::fd::write_existing(&path, b"deny")
                                .ctx(Error::Process, || format!("write \"deny\" to {path}"))?;
                        }
                        write_map(child, "gid_map", gids)?;
                    }
                }
                match &s.map_tools.uid {
                    Some(tool) => crate::rootless::run_tool(tool, child.as_raw(), uids)?,
                    None => write_map(child, "uid_map", uids)?,
                }
                ch.send(&Msg::MapsDone)?;
            }
            Msg::Pid(p) if ready => {
                init = Some(Pid::from_raw(p));
                break;
            }
            Msg::Pid(p) => {
                init = Some(Pid::from_raw(p));
                if hooks_waiting {
                    hooks_waiting = false;
                    runtime_hooks(s, ch, Pid::from_raw(p))?;
                }
            }
            // The init may ask before the intermediate child's Pid is read
            // (two processes, one channel): the hooks' state needs the
            // init's pid, so they wait for it.
            Msg::RuntimeHooks if init.is_none() && two_stage => hooks_waiting = true,
            Msg::RuntimeHooks => runtime_hooks(s, ch, init.unwrap_or(child))?,
            // The intermediate child's Pid and the init's Ready come from two
            // processes, in either order: wait for both.
            Msg::Ready if init.is_some() => break,
            Msg::Ready => {
                ready = true;
            }
            Msg::Error(e) => {
                if let Some(p) = init.filter(|p| *p != child) {
                    let _ = kill(p, Signal::SIGKILL);
                }
                return Err(Error::Process(e));
            }
            m => {
                return Err(Error::Process(format!(
                    "unexpected {m:?} on the init channel"
                )));
            }
        }
    }
    if two_stage {
        // The intermediate child exits once it has forked the init.
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => {}
            other => {
                return Err(Error::Process(format!(
                    "intermediate child ended with {other:?}"
                )));
            }
        }
    }
    init.ok_or_else(|| Error::Process("the container's init pid was never reported".into()))
}

/// The prestart and createRuntime hooks, run by the parent on the init's
/// request; their failure is sent back and returned.
fn runtime_hooks(s: &Spawn, ch: &Channel, init: Pid) -> Result<()> {
    let b = s.bundle;
    let state = crate::hooks::state_json(
        s.id,
        "creating",
        init.as_raw(),
        &b.dir,
        &b.spec.annotations().clone().unwrap_or_default(),
    );
    let hooks = b.spec.hooks().as_ref();
    let r = crate::hooks::run(hooks, crate::hooks::Kind::Prestart, &state)
        .and_then(|()| crate::hooks::run(hooks, crate::hooks::Kind::CreateRuntime, &state));
    match r {
        Ok(()) => ch.send(&Msg::HooksDone),
        Err(e) => {
            let _ = ch.send(&Msg::Error(e.to_string()));
            Err(e)
        }
    }
}

fn write_map(pid: Pid, file: &str, maps: &[LinuxIdMapping]) -> Result<()> {
    let text: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect();
    let path = format!("/proc/{pid}/{file}");
    crate::sys::fd::write_existing(&path, text.as_bytes()).ctx(Error::Process, || {
        format!("write {:?} to {path}", text.trim_end())
    })
}

/// The child of the direct path: already in its new namespaces (but the
/// cgroup one, which must come after the cgroup move).
fn direct_child(s: &Spawn, plan: &NsPlan, ch: &Channel) -> Result<()> {
    ch.expect(Msg::Go)?;
    plan.setns_all(false)?;
    if plan.is_new(LinuxNamespaceType::Cgroup) {
        unshare(CloneFlags::CLONE_NEWCGROUP)
            .ctx(Error::Process, || "unshare the cgroup namespace")?;
    }
    init::run(s, plan.is_new(LinuxNamespaceType::Cgroup), false, ch)
}

/// The intermediate child: joins, unshares in order, forks the init.
fn stage1(s: &Spawn, plan: &NsPlan, ch: &Channel) -> Result<()> {
    ch.expect(Msg::Go)?;
    let userns = plan.is_new(LinuxNamespaceType::User) || plan.joins(LinuxNamespaceType::User);
    if let Some((_, fd, path)) = plan
        .joins
        .iter()
        .find(|(t, _, _)| *t == LinuxNamespaceType::User)
    {
        setns(fd, CloneFlags::CLONE_NEWUSER).ctx(Error::Process, || {
            format!("join user namespace {}", path.display())
        })?;
        become_root()?;
    }
    if plan.is_new(LinuxNamespaceType::User) {
        unshare(CloneFlags::CLONE_NEWUSER).ctx(Error::Process, || "unshare the user namespace")?;
        // Let the parent (still outside) write our maps; stay dumpable so it may.
        ch.send(&Msg::MapRequest)?;
        ch.expect(Msg::MapsDone)?;
        become_root()?;
    }
    plan.setns_all(true)?;
    if plan.is_new(LinuxNamespaceType::Time) {
        unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
            .ctx(Error::Process, || "unshare the time namespace")?;
        // Changing uid made us non-dumpable, which makes /proc/self/* owned by
        // the host's root; be dumpable just long enough to write the offsets.
        nix::sys::prctl::set_dumpable(true).ctx(Error::Process, || "prctl PR_SET_DUMPABLE")?;
        write_time_offsets(s)?;
        nix::sys::prctl::set_dumpable(false).ctx(Error::Process, || "prctl PR_SET_DUMPABLE")?;
    }
    let rest =
        plan.new - (CloneFlags::CLONE_NEWUSER | CloneFlags::from_bits_retain(libc::CLONE_NEWTIME));
    if !rest.is_empty() {
        unshare(rest).ctx(Error::Process, || format!("unshare namespaces {rest:?}"))?;
    }
    match sys::fork().ctx(Error::Process, || "fork the container init")? {
        Forked::Child => init::run(s, plan.is_new(LinuxNamespaceType::Cgroup), userns, ch),
        Forked::Parent(pid) => {
            ch.send(&Msg::Pid(pid.as_raw()))?;
            sys::exit_now(0);
        }
    }
}

fn become_root() -> Result<()> {
    let (u, g) = (Uid::from_raw(0), Gid::from_raw(0));
    setresgid(g, g, g).ctx(
        Error::Process,
        || "setgid 0 in the user namespace (is gid 0 mapped?)",
    )?;
    setresuid(u, u, u).ctx(
        Error::Process,
        || "setuid 0 in the user namespace (is uid 0 mapped?)",
    )
}

fn write_time_offsets(s: &Spawn) -> Result<()> {
    let linux = s.bundle.spec.linux().as_ref().expect("validated");
    let Some(offsets) = linux.time_offsets() else {
        return Ok(());
    };
    let mut text = String::new();
    for (clock, off) in offsets {
        if clock != "monotonic" && clock != "boottime" {
            return Err(Error::Spec(format!(
                "linux.timeOffsets: unknown clock {clock:?}"
            )));
        }
        text.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    crate::sys::fd::write_existing("/proc/self/timens_offsets", text.as_bytes())
        .ctx(Error::Process, || {
            format!("write {:?} to /proc/self/timens_offsets", text.trim_end())
        })
}
