//! The six hook kinds of the runtime spec: each hook runs with its path,
//! args and env, the container state JSON on stdin, and its timeout;
//! a failing createRuntime/createContainer/startContainer (or prestart) hook
//! fails the container, a failing poststart/poststop hook is logged.

use std::io::Write;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::Pid;
use oci_spec::runtime::{Hook, Hooks};

use crate::error::{Context, Error, Result};

/// The container state of the runtime spec, as hooks read it on stdin and
/// a seccomp agent receives it.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct State<'a> {
    pub oci_version: &'static str,
    pub id: &'a str,
    pub status: &'a str,
    pub pid: i32,
    pub bundle: &'a std::path::Path,
    pub annotations: &'a std::collections::HashMap<String, String>,
}

impl<'a> State<'a> {
    pub fn new(
        id: &'a str,
        status: &'a str,
        pid: i32,
        bundle: &'a std::path::Path,
        annotations: &'a std::collections::HashMap<String, String>,
    ) -> State<'a> {
        State {
            oci_version: crate::spec::OCI_VERSION,
            id,
            status,
            pid,
            bundle,
            annotations,
        }
    }
}

/// The state a hook reads on stdin.
pub fn state_json(
    id: &str,
    status: &str,
    pid: i32,
    bundle: &std::path::Path,
    annotations: &std::collections::HashMap<String, String>,
) -> String {
    serde_json::to_string(&State::new(id, status, pid, bundle, annotations))
        .expect("state serialises")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }

    pub fn of(self, h: &Hooks) -> &[Hook] {
        let v = match self {
            Kind::Prestart => h.prestart(),
            Kind::CreateRuntime => h.create_runtime(),
            Kind::CreateContainer => h.create_container(),
            Kind::StartContainer => h.start_container(),
            Kind::Poststart => h.poststart(),
            Kind::Poststop => h.poststop(),
        };
        v.as_deref().unwrap_or_default()
    }
}

/// Whether `hooks` has any hook of these kinds.
pub fn any(hooks: Option<&Hooks>, kinds: &[Kind]) -> bool {
    hooks.is_some_and(|h| kinds.iter().any(|k| !k.of(h).is_empty()))
}

/// Runs every hook of `kind` in order; the first failure is returned.
pub fn run(hooks: Option<&Hooks>, kind: Kind, state: &str) -> Result<()> {
    run_as(hooks, kind, state, None)
}

/// As `run`; with `identity`, each hook first takes the bounding set, user,
/// groups, capabilities and no_new_privs of that process (the init's
/// startContainer hooks run with the identity the container's program gets,
/// as runc runs them, while the init itself keeps its own until execve).
pub fn run_as(
    hooks: Option<&Hooks>,
    kind: Kind,
    state: &str,
    identity: Option<&oci_spec::runtime::Process>,
) -> Result<()> {
    let Some(h) = hooks else { return Ok(()) };
    for (i, hook) in kind.of(h).iter().enumerate() {
        run_one(hook, state, identity).map_err(|e| {
            Error::Process(format!(
                "{} hook {i} ({}): {e}",
                kind.name(),
                hook.path().display()
            ))
        })?;
    }
    Ok(())
}

/// Runs every hook of `kind`, each even when one before it failed, logging
/// failures as warnings (poststart and poststop: runtime.md's lifecycle).
pub fn run_logged(hooks: Option<&Hooks>, kind: Kind, state: &str) {
    let Some(h) = hooks else { return };
    for (i, hook) in kind.of(h).iter().enumerate() {
        if let Err(e) = run_one(hook, state, None) {
            let msg = format!("{} hook {i} ({}): {e}", kind.name(), hook.path().display());
            crate::logging::warn(&msg);
        }
    }
}

fn run_one(
    hook: &Hook,
    state: &str,
    identity: Option<&oci_spec::runtime::Process>,
) -> std::result::Result<(), String> {
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args().as_ref().filter(|a| !a.is_empty()) {
        std::os::unix::process::CommandExt::arg0(&mut cmd, &args[0]);
        cmd.args(&args[1..]);
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let spawned = match identity {
        Some(p) => {
            let p = p.clone();
            crate::sys::spawn_with_pre_exec(&mut cmd, move || {
                take_identity(&p).map_err(|e| std::io::Error::other(e.to_string()))
            })
        }
        None => cmd.spawn(),
    };
    let mut child = spawned.map_err(|e| format!("start: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is not an error.
        crate::sys::ignore_sigpipe();
        let _ = stdin.write_all(state.as_bytes());
    }
    let timeout = hook.timeout().filter(|t| *t > 0);
    if let Some(secs) = timeout {
        let pidfd = crate::sys::pidfd_open(Pid::from_raw(child.id() as i32))
            .map_err(|e| format!("pidfd: {e:?}"))?;
        let ms = (secs as u64).saturating_mul(1000).min(i32::MAX as u64) as i32;
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        let ready = loop {
            match poll(
                &mut fds,
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => break r.unwrap_or(0),
            }
        };
        if ready == 0 {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {secs}s"));
        }
    }
    let st = child.wait().map_err(|e| format!("wait: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("exited with {st}"))
    }
}

/// The container process's identity, for a hook that runs in its place.
fn take_identity(p: &oci_spec::runtime::Process) -> Result<()> {
    let caps = p.capabilities().as_ref();
    crate::security::apply_bounding(caps)?;
    nix::sys::prctl::set_keepcaps(true).ctx(Error::Security, || "prctl PR_SET_KEEPCAPS")?;
    crate::security::switch_user(p)?;
    crate::security::apply_caps(caps)?;
    if p.no_new_privileges().unwrap_or(false) {
        crate::security::no_new_privs()?;
    }
    Ok(())
}
