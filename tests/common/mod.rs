//! Helpers shared by the binary's integration tests.
// Each test crate uses its own subset of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ocirun")
}

/// A scratch directory, removed when dropped.
pub struct Tmp(pub PathBuf);

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh scratch directory named after the test crate, the process and `name`.
pub fn tmp(name: &str) -> Tmp {
    let krate = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .and_then(|s| s.split('-').next().map(String::from))
        .unwrap_or_default();
    let d = std::env::temp_dir().join(format!("ocirun-{krate}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Tmp(d)
}

/// Runs one of the project's scripts/ and asserts it succeeded.
pub fn script(name: &str, args: &[&std::ffi::OsStr]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name);
    let st = Command::new(&path).args(args).status().unwrap();
    assert!(st.success(), "{} failed: {st}", path.display());
}

/// The README's busybox image as an OCI layout at `dir/image`, tag "latest".
pub fn busybox_image(dir: &Path) -> PathBuf {
    let img = dir.join("image");
    script("make-busybox-image", &[img.as_os_str(), "latest".as_ref()]);
    img
}

pub mod clients;
pub mod layers;
