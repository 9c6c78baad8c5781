//! config.json as `create` reads it: parse (oci-spec), validate, then the
//! translations the rootfs and security steps make from it (mount option
//! words, rootfs propagation, the seccomp program). Nothing may panic; a
//! spec that validates must translate or fail with an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::Spec;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<Spec>(data) else {
        return;
    };
    if ocirun::spec::validate(&spec).is_err() {
        return;
    }
    for m in spec.mounts().iter().flatten() {
        if let Ok(p) = ocirun::rootfs::options::parse(m.options().as_deref().unwrap_or_default()) {
            let _ = p.is_bind();
        }
    }
    if let Some(linux) = spec.linux() {
        if let Some(w) = linux.rootfs_propagation() {
            let _ = ocirun::rootfs::propagation_flag(w);
        }
        if let Some(s) = linux.seccomp() {
            let _ = ocirun::security::seccomp::compile(s);
        }
    }
});
