//! `update` and `events` flags: the resources delta an `update` asks for,
//! sizes (512m) and Go durations (5s).

use std::time::Duration;

use oci_spec::runtime::LinuxResources;
use serde_json::{Value, json};

use super::UpdateArgs;
use crate::container::control::merge;
use crate::error::{Context, Error, Result};

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

/// The resources an `update` asks for: the --resources JSON, then the flags.
pub fn resources(a: &UpdateArgs) -> Result<Value> {
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
    fn flags_override_the_resources_file() {
        let a = UpdateArgs {
            memory: Some("10m".into()),
            pids_limit: Some(-1),
            cpu_quota: Some(20000),
            ..Default::default()
        };
        let v = resources(&a).unwrap();
        assert_eq!(
            v,
            json!({"memory": {"limit": 10485760}, "pids": {"limit": -1}, "cpu": {"quota": 20000}})
        );
    }
}
