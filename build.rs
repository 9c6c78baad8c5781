// Lays out the functions a container start runs together at the front of
// .text (link/start-path.order, made by scripts/start-path-order): the
// kernel maps the binary's file pages in 64-128 KiB windows around each
// fault, so hot code spread among cold code costs the whole binary in RSS
// and page faults on every start (docs/performance.md). lld (Rust's default
// linker on x86_64-unknown-linux-gnu) reads the file; names it no longer
// finds are skipped without a warning.
fn main() {
    let order = concat!(env!("CARGO_MANIFEST_DIR"), "/link/start-path.order");
    println!("cargo::rerun-if-changed=link/start-path.order");
    println!("cargo::rustc-link-arg-bin=ocirun=-Wl,--symbol-ordering-file={order}");
    println!("cargo::rustc-link-arg-bin=ocirun=-Wl,--no-warn-symbol-ordering");
}
