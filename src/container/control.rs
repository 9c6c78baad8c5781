//! Operations on a container's cgroup: pause, resume, update, events, ps.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;
use serde_json::{Value, json};

use super::Global;
use super::state::{self, Op, StateDir, Status};
use crate::cgroups;
use crate::error::{Context, Error, Kind, Result};

pub fn pause(g: &Global, id: &str) -> Result<()> {
    let dir = StateDir::open(&g.root, id)?;
    let saved = dir.load()?;
    dir.status(&saved).allows(Op::Pause, id)?;
    cgroups::freeze(&saved.cgroups, true)
}

pub fn resume(g: &Global, id: &str) -> Result<()> {
    let dir = StateDir::open(&g.root, id)?;
    let saved = dir.load()?;
    dir.status(&saved).allows(Op::Resume, id)?;
    cgroups::freeze(&saved.cgroups, false)
}

/// Deep merge of JSON objects: `b` wins (an `update`'s delta laid over
/// what the container runs with).
pub fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

/// `update`: `delta`, a linux.resources JSON object with only the fields to
/// change, is applied to the container's cgroup and merged into what it
/// runs with.
pub fn update(g: &Global, id: &str, delta: Value) -> Result<()> {
    let r: LinuxResources = serde_json::from_value(delta.clone())
        .map_err(|e| Error::Usage(format!("resources: {e}")))?;
    let dir = StateDir::open(&g.root, id)?;
    let mut saved = dir.load()?;
    dir.status(&saved).allows(Op::Update, id)?;
    let cg = cgroups::from_saved(&saved.cgroups, saved.systemd.as_ref());
    cg.set(&r)?;
    // What the container now runs with, for the next update and `events`.
    let mut all = serde_json::to_value(saved.resources.clone().unwrap_or_default())
        .unwrap_or_else(|_| json!({}));
    merge(&mut all, delta);
    saved.resources = serde_json::from_value(all).ok();
    dir.save(&saved)
}

fn event(kind: &str, id: &str, data: Option<Value>) -> Value {
    let mut e = json!({"type": kind, "id": id});
    if let Some(d) = data {
        e["data"] = d;
    }
    e
}

/// `events`: statistics every `interval` and OOM kills as they happen, each
/// a JSON object (runc's shape) handed to `emit`, until the container stops;
/// with `stats_once`, the statistics once.
pub fn events(
    g: &Global,
    id: &str,
    stats_once: bool,
    interval: Duration,
    emit: &mut dyn FnMut(Value),
) -> Result<()> {
    state::check_id(id)?;
    let dir = g.root.join(id);
    // No lock held: `events` runs for the container's lifetime.
    let saved = state::load(&dir)?;
    state::status(&dir, &saved).allows(Op::Update, id)?;
    let hs = saved.cgroups.clone();
    if stats_once {
        emit(event("stats", id, Some(cgroups::stats::stats(&hs))));
        return Ok(());
    }
    let init = crate::sys::pidfd_open(Pid::from_raw(saved.pid))
        .ctx(Error::Container, || format!("pidfd of container {id} init"))?;
    if state::process_start_time(Pid::from_raw(saved.pid)) != Some(saved.pid_start) {
        return Err(
            Error::Container(format!("container {id} is not running")).with_kind(Kind::WrongStatus)
        );
    }
    let mut oom = cgroups::stats::OomWatch::new(&hs)?;
    let mut next = Instant::now() + interval;
    loop {
        let wait = next.saturating_duration_since(Instant::now());
        let ms = PollTimeout::try_from(wait.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX);
        let mut fds = vec![PollFd::new(init.as_fd(), PollFlags::POLLIN)];
        if let Some(o) = &oom {
            fds.push(PollFd::new(o.fd(), PollFlags::POLLIN));
        }
        let n = match poll(&mut fds, ms) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).ctx(Error::Container, || "poll"),
        };
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        if n > 0 && ready.get(1) == Some(&true) && oom.as_mut().is_some_and(|o| o.take() > 0) {
            emit(event("oom", id, None));
        }
        if n > 0 && ready[0] {
            // The init exited; report an OOM kill that came with it.
            if let Some(o) = oom.as_mut()
                && o.take() > 0
            {
                emit(event("oom", id, None));
            }
            return Ok(());
        }
        if Instant::now() >= next {
            emit(event("stats", id, Some(cgroups::stats::stats(&hs))));
            next = Instant::now() + interval;
        }
    }
}

/// `ps`: json, the host pids in the container's cgroup; table, ps(1)'s
/// output (with `ps_args`, default -ef) cut to those pids.
pub fn ps(g: &Global, id: &str, json_out: bool, ps_args: &[String]) -> Result<String> {
    state::check_id(id)?;
    let dir = g.root.join(id);
    let saved = state::load(&dir)?;
    let pids: Vec<i32> = state::processes(&saved)?
        .iter()
        .map(|p| p.as_raw())
        .collect();
    // A stopped container whose cgroup still has processes (a shared pid
    // namespace) lists them.
    if pids.is_empty() && state::status(&dir, &saved) == Status::Stopped {
        return Err(Error::Container(format!(
            "container {id}: container not running"
        )));
    }
    if json_out {
        return Ok(format!(
            "{}\n",
            serde_json::to_string(&pids).expect("serialises")
        ));
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .ctx(Error::Container, || format!("run ps {}", args.join(" ")))?;
    if !out.status.success() {
        return Err(Error::Container(format!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    filter_ps(&String::from_utf8_lossy(&out.stdout), &pids)
}

fn filter_ps(text: &str, pids: &[i32]) -> Result<String> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| Error::Container(format!("ps output has no PID column: {header:?}")))?;
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_what_is_not_asked() {
        let mut a = json!({"memory": {"limit": 1, "reservation": 2}, "pids": {"limit": 3}});
        merge(&mut a, json!({"memory": {"limit": 5}}));
        assert_eq!(
            a,
            json!({"memory": {"limit": 5, "reservation": 2}, "pids": {"limit": 3}})
        );
    }

    #[test]
    fn ps_table_is_cut_to_the_container() {
        let text = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 init\nroot 42 1 0 10:00 ? 00:00:00 sleep 100\n";
        let out = filter_ps(text, &[42]).unwrap();
        assert_eq!(
            out,
            "UID PID PPID C STIME TTY TIME CMD\nroot 42 1 0 10:00 ? 00:00:00 sleep 100\n"
        );
        assert!(filter_ps("NOPE\n", &[1]).is_err());
    }
}
