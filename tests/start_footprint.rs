//! How much of the binary's code one container start maps. The functions a
//! start runs sit together at the front of .text (link/start-path.order,
//! build.rs); the kernel maps the file in 64-128 KiB windows around each
//! fault, so when that order goes stale (functions renamed, new code on the
//! start path) cold code comes back into every start's RSS. This test says
//! so; `scripts/start-path-order` makes the order again.

mod common;

use common::{script, tmp};
use std::path::Path;
use std::process::Command;

/// Rss and Size (kB) of the runtime's executable mapping of its own binary,
/// from the smaps its createRuntime hook copied.
fn code_mapping(smaps: &str) -> (u64, u64) {
    let mut in_code = false;
    let (mut rss, mut size) = (0, 0);
    for line in smaps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = f.first() else { continue };
        if !first.ends_with(':') {
            in_code = f.get(1) == Some(&"r-xp") && f.get(5).is_some_and(|p| !p.starts_with('['));
        } else if in_code && *first == "Size:" {
            size += f[1].parse::<u64>().unwrap();
        } else if in_code && *first == "Rss:" {
            rss += f[1].parse::<u64>().unwrap();
        }
    }
    (rss, size)
}

#[test]
fn a_start_maps_less_than_half_of_the_binarys_code() {
    let release = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/x86_64-unknown-linux-gnu/release/ocirun");
    if !release.exists() {
        eprintln!(
            "skipped: no release binary (cargo build --release); the order is for its symbols"
        );
        return;
    }
    let dir = tmp("footprint");
    let b = dir.0.join("bundle");
    script(
        "make-busybox-bundle",
        &[release.as_ref(), b.as_os_str(), "/bin/true".as_ref()],
    );
    let smaps = dir.0.join("smaps");
    let p = b.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    cfg["hooks"] = serde_json::json!({"createRuntime": [{
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("cat /proc/$PPID/smaps > {}", smaps.display())],
    }]});
    std::fs::write(&p, serde_json::to_vec(&cfg).unwrap()).unwrap();
    // The whole file in the page cache: every window around a fault maps
    // all of its pages, as on a host that runs containers all day.
    std::fs::read(&release).unwrap();
    let o = Command::new(&release)
        .arg("--root")
        .arg(dir.0.join("state"))
        .args(["run", "--bundle"])
        .arg(&b)
        .arg("footprint")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "run: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (rss, size) = code_mapping(&std::fs::read_to_string(&smaps).unwrap());
    assert!(size > 0, "no code mapping in the runtime's smaps");
    assert!(
        rss * 2 < size,
        "a container start maps {rss} kB of the binary's {size} kB of code: \
         link/start-path.order is stale, run scripts/start-path-order"
    );
}

#[test]
fn the_code_mapping_is_read_from_smaps() {
    let smaps = "\
7f00-7f10 r--p 00000000 fe:00 1 /x
Size:                100 kB
Rss:                  50 kB
7f10-7f20 r-xp 00001000 fe:00 1 /x/ocirun-0123456789abcdef
Size:               4000 kB
Rss:                1300 kB
7f30-7f31 r-xp 00000000 00:00 0 [vdso]
Size:                  8 kB
Rss:                   4 kB
";
    assert_eq!(code_mapping(smaps), (1300, 4000));
}
