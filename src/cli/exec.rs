//! `exec`'s process from runc's flags: `--process FILE`, or the
//! container's own process with the command line's changes.

use oci_spec::runtime::{Capabilities, Capability, Process, Spec};
use serde_json::json;

use super::ExecArgs;
use crate::container::ExecOpts;
use crate::error::{Context, Error, Result};
use crate::spec;

/// The options of `container::exec` other than the process.
pub fn opts(a: &ExecArgs) -> ExecOpts {
    ExecOpts {
        id: a.id.clone(),
        detach: a.detach,
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        ignore_paused: a.ignore_paused,
        cgroup: a.cgroup.clone(),
    }
}

/// The process to exec: `--process FILE`, or the container's process with
/// the command line's changes (as runc builds it).
pub fn process(spec: &Spec, a: &ExecArgs) -> Result<Process> {
    if let Some(f) = &a.process {
        let text = std::fs::read(f).ctx(Error::Usage, || {
            format!("read process file {}", f.display())
        })?;
        let p = spec::parse_process(&text).map_err(|e| {
            let e = e.to_string();
            match e.strip_prefix("json: ") {
                Some(m) => Error::Usage(format!("parse process file {}: {m}", f.display())),
                None => Error::Usage(format!("process file {}: {e}", f.display())),
            }
        })?;
        if p.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(Error::Usage(format!(
                "process file {}: args is empty",
                f.display()
            )));
        }
        return Ok(p);
    }
    if a.command.is_empty() {
        return Err(Error::Usage("exec needs a command or --process".into()));
    }
    let mut p = spec.process().clone().ok_or_else(|| {
        Error::Usage("config.json has no process to start from: give --process".into())
    })?;
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(a.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (u.as_str(), None),
        };
        let num = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| Error::Usage(format!("--user {u}: not UID[:GID]")))
        };
        let user = p.user_mut();
        user.set_uid(num(uid)?);
        if let Some(g) = gid {
            user.set_gid(num(g)?);
        }
    }
    if !a.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(a.additional_gids.clone()));
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for c in &a.cap {
            let cap: Capability = serde_json::from_value(json!(c))
                .map_err(|_| Error::Usage(format!("unknown capability {c}")))?;
            let add = |set: &Option<Capabilities>| {
                let mut s = set.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
        }
        p.set_capabilities(Some(caps));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(profile) = &a.apparmor {
        p.set_apparmor_profile(Some(profile.clone()));
    }
    if let Some(label) = &a.process_label {
        p.set_selinux_label(Some(label.clone()));
    }
    Ok(p)
}
