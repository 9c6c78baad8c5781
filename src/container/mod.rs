//! The container as a state machine: create, start, state, kill, delete,
//! run, list. Every operation on one id holds the state dir's lock.
//!
//! One file per command: `create.rs`, `start.rs`, `kill.rs`, `delete.rs`,
//! `run.rs`, `exec.rs`, `list.rs`; the foreground wait of `run` and `exec`
//! in `wait.rs`; here the global options, `state` and `spec`.

pub mod control;
pub mod signal;
pub mod state;

mod create;
mod delete;
mod exec;
mod kill;
mod list;
mod run;
mod start;
mod wait;

use std::io::Write;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use serde::Serialize;

use crate::error::{Context, Error, Kind, Result};
use crate::spec;
use state::{Saved, Status};

pub use create::{CreateOpts, create};
pub use delete::delete;
pub use exec::{ExecOpts, exec};
pub use kill::kill;
pub use list::{ListEntry, list};
pub use run::{RunOpts, run};
pub use start::start;

/// Options shared by the runtime commands (runc's global flags).
pub struct Global {
    pub root: PathBuf,
    pub systemd_cgroup: bool,
    /// Without privilege (`--rootless`): see `crate::rootless`.
    pub rootless: bool,
    /// Only writable cgroups are used: see `rootless::cgroups_rootless`.
    pub rootless_cgroups: bool,
}

/// `state` output: the runtime spec's state plus runc's extra fields.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateOut {
    oci_version: &'static str,
    id: String,
    pid: i32,
    status: &'static str,
    bundle: PathBuf,
    rootfs: PathBuf,
    created: String,
    #[serde(skip_serializing_if = "std::collections::HashMap::is_empty")]
    annotations: std::collections::HashMap<String, String>,
    owner: String,
}

fn state_out(dir: &Path, s: Saved) -> StateOut {
    let status = state::status(dir, &s);
    StateOut {
        oci_version: spec::OCI_VERSION,
        pid: if status == Status::Stopped { 0 } else { s.pid },
        status: status.as_str(),
        id: s.id,
        bundle: s.bundle,
        rootfs: s.rootfs,
        created: s.created,
        annotations: s.annotations,
        owner: s.owner,
    }
}

pub fn state(g: &Global, id: &str) -> Result<String> {
    state::check_id(id)?;
    let dir = g.root.join(id);
    let saved = state::load(&dir)?;
    Ok(serde_json::to_string_pretty(&state_out(&dir, saved)).expect("state serialises"))
}

/// `spec`: writes config.json into `bundle`, refusing to overwrite one.
pub fn write_spec(bundle: &Path, rootless: bool) -> Result<()> {
    let path = bundle.join("config.json");
    let spec = spec::default_spec(rootless)?;
    let text = serde_json::to_string_pretty(&spec).expect("spec serialises");
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path);
    let mut f = match opened {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(
                Error::Usage(format!("{} exists: remove it first", path.display()))
                    .with_kind(Kind::Exists)
                    .with_errno(Errno::EEXIST),
            );
        }
        r => r.ctx(Error::Usage, || format!("create {}", path.display()))?,
    };
    f.write_all(text.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .ctx(Error::Usage, || format!("write {}", path.display()))
}
