//! Errors of every layer. Each variant carries a message that names the
//! failing path or value (`mount proc on /x/rootfs/proc: EPERM`): lowercase,
//! no trailing period. The CLI prints the `Display` form as one line.

use std::fmt::Display;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command-line usage or an unsupported option.
    #[error("{0}")]
    Usage(String),
    /// config.json missing, malformed or asking for something we cannot honour.
    #[error("{0}")]
    Spec(String),
    /// Container state: unknown id, wrong status, state dir trouble.
    #[error("{0}")]
    Container(String),
    /// Setting up the container process (namespaces, sync with the child).
    #[error("{0}")]
    Process(String),
    /// Root filesystem: mounts, devices, pivot_root, masked paths.
    #[error("{0}")]
    Rootfs(String),
    /// Capabilities, rlimits, users and groups.
    #[error("{0}")]
    Security(String),
    /// Cgroup hierarchy work.
    #[error("{0}")]
    Cgroup(String),
    /// OCI image layouts, blobs and layers.
    #[error("{0}")]
    Image(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Formats an OS error the way our messages show it: `EPERM`, `ENOENT (no such file or directory)`
/// is too long for one line, so we keep the errno name only.
pub fn errno_name(e: nix::errno::Errno) -> String {
    format!("{e:?}")
}

/// Turns a std io error into a short text: the errno name when there is one.
pub fn io_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => errno_name(nix::errno::Errno::from_raw(code)),
        None => e.to_string(),
    }
}

/// Adds context to low-level errors. `ctx` builds the message lazily so the
/// hot path never formats strings that are not needed.
pub trait Context<T> {
    fn ctx<F, S>(self, kind: fn(String) -> Error, what: F) -> Result<T>
    where
        F: FnOnce() -> S,
        S: Display;
}

impl<T> Context<T> for std::result::Result<T, nix::errno::Errno> {
    fn ctx<F, S>(self, kind: fn(String) -> Error, what: F) -> Result<T>
    where
        F: FnOnce() -> S,
        S: Display,
    {
        self.map_err(|e| kind(format!("{}: {}", what(), errno_name(e))))
    }
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn ctx<F, S>(self, kind: fn(String) -> Error, what: F) -> Result<T>
    where
        F: FnOnce() -> S,
        S: Display,
    {
        self.map_err(|e| kind(format!("{}: {}", what(), io_text(&e))))
    }
}

impl<T> Context<T> for std::result::Result<T, rustix::io::Errno> {
    fn ctx<F, S>(self, kind: fn(String) -> Error, what: F) -> Result<T>
    where
        F: FnOnce() -> S,
        S: Display,
    {
        self.map_err(|e| {
            let e = nix::errno::Errno::from_raw(e.raw_os_error());
            kind(format!("{}: {}", what(), errno_name(e)))
        })
    }
}

impl<T> Context<T> for std::result::Result<T, pathrs::error::Error> {
    fn ctx<F, S>(self, kind: fn(String) -> Error, what: F) -> Result<T>
    where
        F: FnOnce() -> S,
        S: Display,
    {
        self.map_err(|e| {
            let text = match e.kind() {
                pathrs::error::ErrorKind::OsError(Some(code)) => {
                    errno_name(nix::errno::Errno::from_raw(code))
                }
                _ => e.to_string(),
            };
            kind(format!("{}: {}", what(), text))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_context_names_path_and_errno() {
        let r: std::result::Result<(), nix::errno::Errno> = Err(nix::errno::Errno::EPERM);
        let e = r
            .ctx(Error::Rootfs, || "mount proc on /r/proc")
            .unwrap_err();
        assert_eq!(e.to_string(), "mount proc on /r/proc: EPERM");
    }
}
