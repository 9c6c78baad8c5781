//! Statistics and OOM notification for `events`, in runc's JSON shape
//! (`types.Stats`: cpu, memory, pids, blkio, hugetlb), read from whichever
//! hierarchy has each controller.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::{Hierarchy, v1_of};
use crate::error::{Context, Error, Result};

fn read(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok()
}

fn num(p: &Path) -> u64 {
    read(p)
        .and_then(|s| {
            let t = s.trim();
            if t == "max" {
                Some(u64::MAX)
            } else {
                t.parse().ok()
            }
        })
        .unwrap_or(0)
}

/// "key value" lines (memory.stat, cpu.stat, cpuacct.stat).
fn kv(p: &Path) -> BTreeMap<String, u64> {
    read(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (k, v) = line.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// Drops zero numbers and empty objects/arrays (Go's omitempty).
fn omit(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, omit(v)))
                .filter(|(_, v)| !empty(v))
                .collect::<Map<_, _>>(),
        ),
        v => v,
    }
}

fn empty(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_u64() == Some(0),
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Null => true,
        Value::Bool(_) => false,
    }
}

/// The container's statistics now.
pub fn stats(hs: &[Hierarchy]) -> Value {
    let v2 = hs.iter().find(|h| h.v2).map(|h| h.dir.clone());
    let pure_v2 = hs.len() == 1 && v2.is_some();
    let pick = |v1: &str| -> Option<(bool, PathBuf)> {
        match v1_of(hs, v1) {
            Some(h) => Some((false, h.dir.clone())),
            None => v2.clone().map(|d| (true, d)),
        }
    };
    let mut out = Map::new();
    if pure_v2 {
        let d = v2.clone().expect("v2");
        out.insert("cpu".into(), cpu_v2(&d));
        out.insert("memory".into(), memory_v2(&d));
        out.insert("pids".into(), pids(&d));
        out.insert("blkio".into(), io_v2(&d));
    } else {
        if let Some(h) = v1_of(hs, "cpuacct") {
            let cpu_dir = v1_of(hs, "cpu").map(|h| h.dir.clone());
            out.insert("cpu".into(), cpu_v1(&h.dir, cpu_dir.as_deref()));
        }
        if let Some(h) = v1_of(hs, "memory") {
            out.insert("memory".into(), memory_v1(&h.dir));
        }
        if let Some(h) = v1_of(hs, "pids") {
            out.insert("pids".into(), pids(&h.dir));
        }
        if let Some(h) = v1_of(hs, "blkio") {
            out.insert("blkio".into(), blkio_v1(&h.dir));
        }
    }
    if let Some((is_v2, d)) = pick("hugetlb") {
        out.insert("hugetlb".into(), hugetlb(&d, is_v2));
    }
    omit(Value::Object(out))
}

fn cpu_v2(d: &Path) -> Value {
    let s = kv(&d.join("cpu.stat"));
    let g = |k: &str| s.get(k).copied().unwrap_or(0);
    json!({
        "usage": {"total": g("usage_usec") * 1000, "kernel": g("system_usec") * 1000, "user": g("user_usec") * 1000},
        "throttling": {"periods": g("nr_periods"), "throttledPeriods": g("nr_throttled"), "throttledTime": g("throttled_usec") * 1000},
    })
}

fn cpu_v1(acct: &Path, cpu: Option<&Path>) -> Value {
    // cpuacct.stat is in USER_HZ ticks (100 per second on Linux).
    let st = kv(&acct.join("cpuacct.stat"));
    let tick = 1_000_000_000 / 100;
    let percpu: Vec<u64> = read(&acct.join("cpuacct.usage_percpu"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let t = cpu.map(|c| kv(&c.join("cpu.stat"))).unwrap_or_default();
    let g = |k: &str| t.get(k).copied().unwrap_or(0);
    json!({
        "usage": {
            "total": num(&acct.join("cpuacct.usage")),
            "percpu": percpu,
            "kernel": st.get("system").copied().unwrap_or(0) * tick,
            "user": st.get("user").copied().unwrap_or(0) * tick,
        },
        "throttling": {"periods": g("nr_periods"), "throttledPeriods": g("nr_throttled"), "throttledTime": g("throttled_time")},
    })
}

fn memory_v2(d: &Path) -> Value {
    let raw = kv(&d.join("memory.stat"));
    let events = kv(&d.join("memory.events"));
    json!({
        "cache": raw.get("file").copied().unwrap_or(0),
        "usage": {"usage": num(&d.join("memory.current")), "limit": num(&d.join("memory.max")), "max": num(&d.join("memory.peak")), "failcnt": events.get("max").copied().unwrap_or(0)},
        "swap": {"usage": num(&d.join("memory.swap.current")), "limit": num(&d.join("memory.swap.max")), "failcnt": 0},
        "raw": raw,
    })
}

fn memory_v1(d: &Path) -> Value {
    let raw = kv(&d.join("memory.stat"));
    let entry = |prefix: &str| {
        json!({
            "usage": num(&d.join(format!("{prefix}usage_in_bytes"))),
            "max": num(&d.join(format!("{prefix}max_usage_in_bytes"))),
            "limit": num(&d.join(format!("{prefix}limit_in_bytes"))),
            "failcnt": num(&d.join(format!("{prefix}failcnt"))),
        })
    };
    json!({
        "cache": raw.get("cache").copied().unwrap_or(0),
        "usage": entry("memory."),
        "swap": entry("memory.memsw."),
        "kernel": entry("memory.kmem."),
        "kernelTCP": entry("memory.kmem.tcp."),
        "raw": raw,
    })
}

fn pids(d: &Path) -> Value {
    let limit = num(&d.join("pids.max"));
    json!({"current": num(&d.join("pids.current")), "limit": if limit == u64::MAX { 0 } else { limit }})
}

fn io_v2(d: &Path) -> Value {
    let mut bytes = Vec::new();
    let mut ios = Vec::new();
    for line in read(&d.join("io.stat")).unwrap_or_default().lines() {
        let mut it = line.split_whitespace();
        let Some((maj, min)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (maj, min): (u64, u64) = (maj.parse().unwrap_or(0), min.parse().unwrap_or(0));
        for f in it {
            let Some((k, v)) = f.split_once('=') else {
                continue;
            };
            let v: u64 = v.parse().unwrap_or(0);
            let e = |op: &str| json!({"major": maj, "minor": min, "op": op, "value": v});
            match k {
                "rbytes" => bytes.push(e("Read")),
                "wbytes" => bytes.push(e("Write")),
                "rios" => ios.push(e("Read")),
                "wios" => ios.push(e("Write")),
                _ => {}
            }
        }
    }
    json!({"ioServiceBytesRecursive": bytes, "ioServicedRecursive": ios})
}

fn blkio_v1(d: &Path) -> Value {
    let entries = |file: &str| -> Vec<Value> {
        read(&d.join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let [dev, op, v] = f[..] else { return None };
                let (maj, min) = dev.split_once(':')?;
                Some(json!({"major": maj.parse::<u64>().ok()?, "minor": min.parse::<u64>().ok()?, "op": op, "value": v.parse::<u64>().ok()?}))
            })
            .collect()
    };
    json!({
        "ioServiceBytesRecursive": entries("blkio.throttle.io_service_bytes_recursive"),
        "ioServicedRecursive": entries("blkio.throttle.io_serviced_recursive"),
    })
}

fn hugetlb(d: &Path, v2: bool) -> Value {
    let mut out = Map::new();
    let Ok(rd) = fs::read_dir(d) else {
        return Value::Object(out);
    };
    let mut sizes: Vec<String> = rd
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let rest = n.strip_prefix("hugetlb.")?;
            let (size, file) = rest.split_once('.')?;
            (file == if v2 { "max" } else { "limit_in_bytes" }).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    for s in sizes {
        let f = |x: &str| d.join(format!("hugetlb.{s}.{x}"));
        let v = if v2 {
            let ev = kv(&f("events"));
            json!({"usage": num(&f("current")), "failcnt": ev.get("max").copied().unwrap_or(0)})
        } else {
            json!({"usage": num(&f("usage_in_bytes")), "max": num(&f("max_usage_in_bytes")), "failcnt": num(&f("failcnt"))})
        };
        out.insert(s, v);
    }
    Value::Object(out)
}

/// Something to poll for the container's OOM kills: an eventfd registered
/// on v1 memory.oom_control, or an inotify watch on v2 memory.events.
pub struct OomWatch {
    fd: OwnedFd,
    kind: OomKind,
}

enum OomKind {
    V1 {
        _control: fs::File,
    },
    V2 {
        events: PathBuf,
        inotify: nix::sys::inotify::Inotify,
        last: u64,
    },
}

impl OomWatch {
    pub fn new(hs: &[Hierarchy]) -> Result<Option<OomWatch>> {
        use std::os::fd::AsRawFd;
        if let Some(h) = v1_of(hs, "memory") {
            let efd =
                nix::sys::eventfd::EventFd::from_flags(nix::sys::eventfd::EfdFlags::EFD_CLOEXEC)
                    .ctx(Error::Cgroup, || "eventfd for oom notification")?;
            let control_path = h.dir.join("memory.oom_control");
            let control = fs::File::open(&control_path)
                .ctx(Error::Cgroup, || format!("open {}", control_path.display()))?;
            let reg = h.dir.join("cgroup.event_control");
            crate::sys::fd::write_existing(
                &reg,
                format!("{} {}", efd.as_fd().as_raw_fd(), control.as_raw_fd()).as_bytes(),
            )
            .ctx(Error::Cgroup, || {
                format!("register oom eventfd in {}", reg.display())
            })?;
            return Ok(Some(OomWatch {
                fd: efd.into(),
                kind: OomKind::V1 { _control: control },
            }));
        }
        let Some(h) = hs.iter().find(|h| h.v2) else {
            return Ok(None);
        };
        let events = h.dir.join("memory.events");
        if !events.exists() {
            return Ok(None);
        }
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .ctx(Error::Cgroup, || "inotify for oom notification")?;
        inotify
            .add_watch(&events, AddWatchFlags::IN_MODIFY)
            .ctx(Error::Cgroup, || format!("watch {}", events.display()))?;
        let last = kv(&events).get("oom_kill").copied().unwrap_or(0);
        let fd = inotify
            .as_fd()
            .try_clone_to_owned()
            .ctx(Error::Cgroup, || "dup inotify fd")?;
        Ok(Some(OomWatch {
            fd,
            kind: OomKind::V2 {
                events,
                inotify,
                last,
            },
        }))
    }

    /// The fd to poll for readability.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// After the fd polled readable: how many OOM kills happened since.
    pub fn take(&mut self) -> u64 {
        match &mut self.kind {
            OomKind::V1 { .. } => {
                let mut b = [0u8; 8];
                match nix::unistd::read(self.fd.as_fd(), &mut b) {
                    Ok(8) => u64::from_ne_bytes(b),
                    _ => 0,
                }
            }
            OomKind::V2 {
                events,
                inotify,
                last,
            } => {
                let _ = inotify.read_events();
                let now = kv(events).get("oom_kill").copied().unwrap_or(0);
                let n = now.saturating_sub(*last);
                *last = now;
                n
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omit_drops_zero_and_empty_like_go() {
        let v = omit(json!({"a": 0, "b": 1, "c": {"d": 0}, "e": [], "f": {"g": 2}}));
        assert_eq!(v, json!({"b": 1, "f": {"g": 2}}));
    }
}
