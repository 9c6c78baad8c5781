//! The binary's C entry point, in place of Rust's runtime start-up. This
//! file belongs to the binary, not the library: main.rs includes it (the
//! library's sys does not), so that it can sit with the rest of ocirun's
//! `unsafe` here.
//!
//! std's start-up costs a container start about 19 syscalls per exec, and
//! ocirun execs twice per start (the CVE-2019-5736 re-exec): the main
//! thread's stack bounds read from /proc/self/maps, an alternate signal
//! stack with SIGSEGV and SIGBUS handlers (for the "has overflowed its
//! stack" message; a stack overflow is still a SIGSEGV on the guard page
//! without them), and SIGPIPE ignored, which ocirun sets back at once. The
//! one part that matters is kept: standard fds that are closed are opened
//! on /dev/null (`ocirun::start_process`). `std::env::args` does not need
//! the runtime: glibc hands argv to std's initialiser. The exit paths call
//! `std::process::exit`, which flushes stdout as the runtime would.

/// Called by glibc's `__libc_start_main`.
// SAFETY: the one symbol named `main` in the binary (no Rust `fn main` is
// generated under `#![no_main]`), with the C signature glibc calls it by;
// it never returns.
#[unsafe(no_mangle)]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    ocirun::start_process();
    crate::run()
}
