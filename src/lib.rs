//! ocirun: a low-level OCI container runtime (runc-compatible command line)
//! with a built-in OCI image unpacker.

pub mod cgroups;
pub mod cli;
pub mod container;
pub mod error;
mod hex;
pub mod hooks;
pub mod image;
pub mod logging;
pub mod process;
pub mod rootfs;
pub mod rootless;
pub mod security;
pub mod spec;
#[allow(unsafe_code)]
mod sys;
pub mod tty;

pub use error::{Error, Result};
/// For the binary (main.rs), before anything else.
pub use sys::start_process;
