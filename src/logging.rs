//! `--log FILE` and `--log-format text|json`. containerd and podman read the
//! json lines (`{"level":"error","msg":"...","time":"..."}`) from the log
//! file to report why a runtime call failed, so errors always go there too.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

struct Logger {
    file: Option<File>,
    format: Format,
    debug: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Opens the log file (append, created if missing). An unopenable log file is
/// reported but not fatal: the error still reaches stderr.
pub fn init(path: Option<&Path>, format: Format, debug: bool) {
    let file = path.and_then(|p| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| eprintln!("open log file {}: {e}", p.display()))
            .ok()
    });
    let _ = LOGGER.set(Logger {
        file,
        format,
        debug,
    });
}

pub fn debug_enabled() -> bool {
    LOGGER.get().is_some_and(|logger| logger.debug)
}

/// Writes one record to the log file, if there is one.
/// A warning: on stderr, and in the --log file.
pub fn warn(msg: &str) {
    log("warning", msg);
    eprintln!("ocirun: warning: {msg}");
}

pub fn log(level: &str, msg: &str) {
    let Some(logger) = LOGGER.get() else { return };
    if level == "debug" && !logger.debug {
        return;
    }
    let Some(mut file) = logger.file.as_ref() else {
        if level == "debug" {
            eprintln!("{msg}");
        }
        return;
    };
    let line = format_record(logger.format, level, msg, SystemTime::now());
    let _ = file.write_all(line.as_bytes());
}

pub fn debug(msg: impl FnOnce() -> String) {
    if debug_enabled() {
        log("debug", &msg());
    }
}

fn format_record(format: Format, level: &str, msg: &str, now: SystemTime) -> String {
    let time = rfc3339(now);
    match format {
        Format::Json => {
            let rec = serde_json::json!({"level": level, "msg": msg, "time": time});
            format!("{rec}\n")
        }
        Format::Text => format!(
            "time=\"{time}\" level={level} msg=\"{}\"\n",
            msg.escape_default()
        ),
    }
}

/// RFC 3339 UTC time with nanoseconds, e.g. `2026-11-23T21:50:42.123456789Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_795_470_642, 5);
        assert_eq!(rfc3339(t), "2026-11-23T21:50:42.000000005Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn json_record_has_level_msg_time() {
        let line = format_record(Format::Json, "error", "bad \"x\"", UNIX_EPOCH);
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "bad \"x\"");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000000000Z");
    }
}
