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
use crate::cli::UpdateArgs;
use crate::error::{Context, Error, Result, io_text};

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

/// "-1", "1024", "512k", "100m", "1g", "2GiB": bytes (1024-based, as runc's
/// units.RAMInBytes).
pub fn parse_size(s: &str) -> Result<i64> {
    let t = s.trim();
    if t == "-1" {
        return Ok(-1);
    }
    let lower = t.to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (n, unit) = lower.split_at(digits_end);
    let unit = unit.trim();
    let mult: f64 = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => {
            return Err(Error::Usage(format!(
                "invalid size {s:?}: expected e.g. 512m"
            )));
        }
    };
    let n: f64 = n
        .parse()
        .map_err(|_| Error::Usage(format!("invalid size {s:?}: expected e.g. 512m")))?;
    Ok((n * mult) as i64)
}

/// Deep merge of JSON objects: `b` wins.
fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

/// The resources an `update` asks for: the --resources JSON, then the flags.
fn requested(a: &UpdateArgs) -> Result<Value> {
    let mut v = match &a.resources {
        None => json!({}),
        Some(p) => {
            let text = if p.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                    .ctx(Error::Usage, || "read resources from stdin")?;
                s
            } else {
                std::fs::read_to_string(p)
                    .ctx(Error::Usage, || format!("read resources {}", p.display()))?
            };
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| Error::Usage(format!("parse resources {}: {e}", p.display())))?;
            serde_json::from_value::<LinuxResources>(v.clone())
                .map_err(|e| Error::Usage(format!("resources {}: {e}", p.display())))?;
            v
        }
    };
    let size = |s: &Option<String>| s.as_deref().map(parse_size).transpose();
    let mut flags = json!({});
    let mut set = |path: [&str; 2], val: Option<Value>| {
        if let Some(val) = val {
            merge(&mut flags, json!({ path[0]: { path[1]: val } }));
        }
    };
    set(["memory", "limit"], size(&a.memory)?.map(Value::from));
    set(
        ["memory", "reservation"],
        size(&a.memory_reservation)?.map(Value::from),
    );
    set(["memory", "swap"], size(&a.memory_swap)?.map(Value::from));
    set(["cpu", "shares"], a.cpu_share.map(Value::from));
    set(["cpu", "quota"], a.cpu_quota.map(Value::from));
    set(["cpu", "period"], a.cpu_period.map(Value::from));
    set(["cpu", "burst"], a.cpu_burst.map(Value::from));
    set(["cpu", "realtimePeriod"], a.cpu_rt_period.map(Value::from));
    set(
        ["cpu", "realtimeRuntime"],
        a.cpu_rt_runtime.map(Value::from),
    );
    set(["cpu", "cpus"], a.cpuset_cpus.clone().map(Value::from));
    set(["cpu", "mems"], a.cpuset_mems.clone().map(Value::from));
    set(["pids", "limit"], a.pids_limit.map(Value::from));
    set(["blockIO", "weight"], a.blkio_weight.map(Value::from));
    if a.l3_cache_schema.is_some() || a.mem_bw_schema.is_some() {
        return Err(Error::Usage(
            "--l3-cache-schema/--mem-bw-schema: Intel RDT is not supported".into(),
        ));
    }
    merge(&mut v, flags);
    Ok(v)
}

pub fn update(g: &Global, a: &UpdateArgs) -> Result<()> {
    let delta = requested(a)?;
    let r: LinuxResources = serde_json::from_value(delta.clone())
        .map_err(|e| Error::Usage(format!("resources: {e}")))?;
    let dir = StateDir::open(&g.root, &a.id)?;
    let mut saved = dir.load()?;
    dir.status(&saved).allows(Op::Update, &a.id)?;
    let cg = cgroups::from_saved(&saved.cgroups, saved.systemd.as_ref());
    cg.set(&r)?;
    // What the container now runs with, for the next update and `events`.
    let mut all = serde_json::to_value(saved.resources.clone().unwrap_or_default())
        .unwrap_or_else(|_| json!({}));
    merge(&mut all, delta);
    saved.resources = serde_json::from_value(all).ok();
    dir.save(&saved)
}

/// Go's time.ParseDuration for the forms runc users write: 5s, 500ms, 1m30s.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let err = || Error::Usage(format!("invalid duration {s:?}: expected e.g. 5s or 500ms"));
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let n: f64 = rest[..end].parse().map_err(|_| err())?;
        rest = &rest[end..];
        let uend = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..uend] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += Duration::from_secs_f64(n * secs);
        rest = &rest[uend..];
    }
    if total.is_zero() {
        return Err(err());
    }
    Ok(total)
}

fn print_event(kind: &str, id: &str, data: Option<Value>) {
    let mut e = json!({"type": kind, "id": id});
    if let Some(d) = data {
        e["data"] = d;
    }
    println!("{e}");
}

/// `events`: statistics every `interval` and OOM kills as they happen, one
/// JSON object per line, until the container stops; `--stats`: once.
pub fn events(g: &Global, id: &str, stats_once: bool, interval: &str) -> Result<()> {
    let interval = parse_duration(interval)?;
    state::check_id(id)?;
    let dir = g.root.join(id);
    // No lock held: `events` runs for the container's lifetime.
    let saved = state::load(&dir)?;
    state::status(&dir, &saved).allows(Op::Update, id)?;
    let hs = saved.cgroups.clone();
    if stats_once {
        print_event("stats", id, Some(cgroups::stats::stats(&hs)));
        return Ok(());
    }
    let init = crate::sys::pidfd_open(Pid::from_raw(saved.pid))
        .ctx(Error::Container, || format!("pidfd of container {id} init"))?;
    if state::process_start_time(Pid::from_raw(saved.pid)) != Some(saved.pid_start) {
        return Err(Error::Container(format!("container {id} is not running")));
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
            Err(e) => return Err(Error::Container(format!("poll: {e:?}"))),
        };
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        if n > 0 && ready.get(1) == Some(&true) && oom.as_mut().is_some_and(|o| o.take() > 0) {
            print_event("oom", id, None);
        }
        if n > 0 && ready[0] {
            // The init exited; report an OOM kill that came with it.
            if let Some(o) = oom.as_mut()
                && o.take() > 0
            {
                print_event("oom", id, None);
            }
            return Ok(());
        }
        if Instant::now() >= next {
            print_event("stats", id, Some(cgroups::stats::stats(&hs)));
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
        .map_err(|e| Error::Container(format!("run ps {}: {}", args.join(" "), io_text(&e))))?;
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
    for l in lines {
        let pid = l
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(l);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_runc() {
        assert_eq!(parse_size("-1").unwrap(), -1);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("512k").unwrap(), 512 * 1024);
        assert_eq!(parse_size("100M").unwrap(), 100 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1.5m").unwrap(), 3 << 19);
        assert!(parse_size("12x").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn durations_like_go() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("x").is_err());
    }

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
    fn flags_override_the_resources_file() {
        let a = UpdateArgs {
            memory: Some("10m".into()),
            pids_limit: Some(-1),
            cpu_quota: Some(20000),
            ..Default::default()
        };
        let v = requested(&a).unwrap();
        assert_eq!(
            v,
            json!({"memory": {"limit": 10485760}, "pids": {"limit": -1}, "cpu": {"quota": 20000}})
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
