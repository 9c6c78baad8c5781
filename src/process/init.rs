//! The container init, top-down in spec order: root filesystem, hostname,
//! sysctl, readonly/masked paths, rlimits, terminal, the process prepared
//! (`finalize::prepare`), `Ready`; then wait for `start`, the
//! startContainer hooks, and `finalize::exec` (identity, seccomp, execve).

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::stat::{Mode, umask};
use nix::unistd::setsid;
use oci_spec::runtime::Process;

use super::Spawn;
use super::channel::{Channel, Msg};
use super::finalize::{self, Filter};
use crate::error::{Context, Error, Result};
use crate::rootfs;
use crate::security;

pub(super) fn run(s: &Spawn, cgroupns: bool, userns: bool, ch: &Channel) -> Result<()> {
    let spec = &s.bundle.spec;
    let process = spec.process().as_ref();
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
            // Also when the runtime itself runs in one (rootless podman's).
            userns: userns || crate::rootless::in_user_namespace(),
            cgroupns,
            cgroups: s.cgroup_view.as_deref().unwrap_or(s.cgroup.hierarchies()),
            no_pivot: s.no_pivot,
            mountns: spec.linux().as_ref().is_some_and(|linux| {
                linux
                    .namespaces()
                    .iter()
                    .flatten()
                    .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Mount)
            }),
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
    let oom_score_adj = process.and_then(|p| p.oom_score_adj());
    let procfs = if sysctls.is_some() || oom_score_adj.is_some() {
        Some(rootfs::procfs::Procfs::open()?)
    } else {
        None
    };
    for (key, value) in sysctls.into_iter().flatten() {
        procfs.as_ref().expect("opened").write_sysctl(key, value)?;
    }
    rootfs::finalize(spec)?;

    if let Some(adj) = oom_score_adj {
        let now: Option<i32> = crate::sys::fd::read_text("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        // Non-dumpable, our /proc/self files belong to the host's root,
        // which a user namespace does not map: be dumpable just for the
        // write (nothing of the container runs yet).
        if userns {
            nix::sys::prctl::set_dumpable(true).ctx(Error::Process, || "prctl PR_SET_DUMPABLE")?;
        }
        let written = procfs
            .as_ref()
            .expect("opened")
            .write_self("oom_score_adj", &adj.to_string());
        if userns {
            nix::sys::prctl::set_dumpable(false).ctx(Error::Process, || "prctl PR_SET_DUMPABLE")?;
        }
        written.map_err(|e| match now {
            Some(now) if adj < now => Error::Process(format!(
                "oomScoreAdj {adj}: {e} (lowering it below {now} needs privilege: CAP_SYS_RESOURCE)"
            )),
            _ => e,
        })?;
    }
    drop(procfs);
    if let Some(p) = process {
        security::set_rlimits(p)?;
    }

    setsid().ctx(Error::Process, || "setsid")?;
    if process.is_some_and(|p| p.terminal().unwrap_or(false)) {
        let sock = s.console.as_ref().ok_or_else(|| {
            Error::Process("process.terminal is true but no --console-socket was given".into())
        })?;
        let size = process.and_then(|p| p.console_size());
        crate::tty::setup_console(sock, size.as_ref())?;
    }

    // Everything the runtime needs for itself, while unconfined.
    let mut extra_env = Vec::new();
    if s.listen_fds > 0 {
        // The pid the process will have, as its own pid namespace sees it.
        let pid = nix::unistd::getpid();
        extra_env.push(format!("LISTEN_FDS={}", s.listen_fds));
        extra_env.push(format!("LISTEN_PID={pid}"));
    }
    let prepared = process
        .map(|p| finalize::prepare(p, &extra_env))
        .transpose()?;
    // The created container's process already has its personality,
    // scheduler, I/O priority and memory policy.
    if let Some(p) = process {
        super::attrs::apply(p, Some(linux), false)?;
    }
    let filter = s.seccomp.as_ref().map(|program| Filter {
        program,
        listener: s
            .seccomp_listener
            .as_ref()
            .map(|sock| (sock, listener_state(s, host_pid))),
    });
    // A notify listener must reach listenerPath during `create` (its agent
    // may wait for it before calling `start`): such a filter goes in now.
    let (early, late) = match filter {
        Some(f) if f.program.notify => (Some(f), None),
        f => (None, f),
    };
    if let Some(f) = &early {
        f.load()?;
    }

    // Rootless: `exec` into the created container runs as the user, with
    // no capability in the initial user namespace, so it may open our
    // /proc/<pid>/ns files only if we are dumpable (as runc's init is when
    // it makes the user namespace). We still hold what the container's own
    // root holds in its user namespace, no more; execve recomputes it.
    if s.rootless && userns {
        nix::sys::prctl::set_dumpable(true).ctx(Error::Process, || "prctl PR_SET_DUMPABLE")?;
    }
    ch.send(&Msg::Ready)?;
    // From here the parent is gone: what goes wrong is told to `start`.
    let Err(e) = after_start(s, process, prepared, late.as_ref(), &state("created"));
    report_to_start(&s.result, &e);
    crate::sys::exit_now(1)
}

/// Blocks until `start`, runs the startContainer hooks and execs.
fn after_start(
    s: &Spawn,
    process: Option<&Process>,
    prepared: Option<finalize::Prepared>,
    filter: Option<&Filter>,
    state: &str,
) -> Result<std::convert::Infallible> {
    let mut b = [0u8; 1];
    loop {
        match nix::unistd::read(s.fifo.as_fd(), &mut b) {
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).ctx(Error::Process, || "read the exec fifo"),
        }
    }
    // In the container, after `start`, before the process runs; each hook
    // with the identity the process will have.
    crate::hooks::run_as(
        s.bundle.spec.hooks().as_ref(),
        crate::hooks::Kind::StartContainer,
        state,
        process,
    )?;
    let (Some(p), Some(prep)) = (process, prepared) else {
        return Err(Error::Spec(
            "config.json has no process: there is nothing to start".into(),
        ));
    };
    finalize::exec(p, prep, s.listen_fds + s.preserve_fds, filter)
}

/// An error after `Ready`, for `start` to read from the result fifo.
fn report_to_start(result: &OwnedFd, e: &Error) {
    let msg = e.to_string();
    if nix::unistd::write(result, msg.as_bytes()).is_err() {
        // Nobody listens: the container's stderr is all we have.
        eprintln!("ocirun: {msg}");
    }
}

/// The state a seccomp listener receives with the fd, as runc sends it.
fn listener_state(s: &Spawn, host_pid: i32) -> String {
    let spec = &s.bundle.spec;
    let seccomp = spec
        .linux()
        .as_ref()
        .and_then(|linux| linux.seccomp().as_ref());
    let annotations = spec.annotations().clone().unwrap_or_default();
    let state = crate::hooks::State::new(s.id, "creating", host_pid, &s.bundle.dir, &annotations);
    match seccomp {
        Some(sc) => crate::security::seccomp::listener_state(sc, host_pid, &state).to_string(),
        None => String::new(),
    }
}
