//! Errors of every layer. Each error carries a message that names the
//! failing path or value (`mount proc on /x/rootfs/proc: EPERM`): lowercase,
//! no trailing period. The CLI prints the `Display` form (the message alone)
//! as one line.
//!
//! Beside the message an error keeps what code branches on, so no caller has
//! to parse the text or probe the filesystem again: the errno of the failed
//! call (`errno()`, recorded by [`Context::ctx`]) and, where the code knows
//! it, a [`Kind`] (`kind()`: the container does not exist, exists already, or
//! its status forbids the operation).

use std::fmt::Display;

use nix::errno::Errno;

/// The layer an error comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// Bad command-line usage or an unsupported option.
    Usage,
    /// config.json missing, malformed or asking for something we cannot honour.
    Spec,
    /// Container state: unknown id, wrong status, state dir trouble.
    Container,
    /// Setting up the container process (namespaces, sync with the child).
    Process,
    /// Root filesystem: mounts, devices, pivot_root, masked paths.
    Rootfs,
    /// Capabilities, rlimits, users and groups.
    Security,
    /// Cgroup hierarchy work.
    Cgroup,
    /// OCI image layouts, blobs and layers.
    Image,
}

/// What went wrong, where callers branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The container (or the thing named) does not exist.
    NotFound,
    /// It exists already.
    Exists,
    /// The container's status does not allow the operation.
    WrongStatus,
}

/// An error: a layer, the message users see, and the errno and kind when
/// known. Build one with the constructor of its layer (`Error::Spec(msg)`),
/// which also fits where a `fn(String) -> Error` is wanted (`.ctx`).
#[derive(Debug)]
pub struct Error {
    layer: Layer,
    msg: String,
    errno: Option<Errno>,
    kind: Option<Kind>,
}

impl Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

// The constructors are named after the layers (as the enum variants they
// replace were) so call sites read `Error::Rootfs(format!(...))`.
#[allow(non_snake_case)]
impl Error {
    /// Bad command-line usage or an unsupported option.
    pub fn Usage(msg: String) -> Error {
        Error::new(Layer::Usage, msg)
    }
    /// config.json missing, malformed or asking for something we cannot honour.
    pub fn Spec(msg: String) -> Error {
        Error::new(Layer::Spec, msg)
    }
    /// Container state: unknown id, wrong status, state dir trouble.
    pub fn Container(msg: String) -> Error {
        Error::new(Layer::Container, msg)
    }
    /// Setting up the container process (namespaces, sync with the child).
    pub fn Process(msg: String) -> Error {
        Error::new(Layer::Process, msg)
    }
    /// Root filesystem: mounts, devices, pivot_root, masked paths.
    pub fn Rootfs(msg: String) -> Error {
        Error::new(Layer::Rootfs, msg)
    }
    /// Capabilities, rlimits, users and groups.
    pub fn Security(msg: String) -> Error {
        Error::new(Layer::Security, msg)
    }
    /// Cgroup hierarchy work.
    pub fn Cgroup(msg: String) -> Error {
        Error::new(Layer::Cgroup, msg)
    }
    /// OCI image layouts, blobs and layers.
    pub fn Image(msg: String) -> Error {
        Error::new(Layer::Image, msg)
    }
}

impl Error {
    pub fn new(layer: Layer, msg: String) -> Error {
        Error {
            layer,
            msg,
            errno: None,
            kind: None,
        }
    }

    /// The same error, recording the errno of the call that failed.
    pub fn with_errno(mut self, errno: Errno) -> Error {
        self.errno = Some(errno);
        self
    }

    /// The same error, recording what kind of failure it is.
    pub fn with_kind(mut self, kind: Kind) -> Error {
        self.kind = Some(kind);
        self
    }

    /// The errno of the system call that failed, when one did.
    pub fn errno(&self) -> Option<Errno> {
        self.errno
    }

    /// What kind of failure this is, where the code that failed knows it.
    pub fn kind(&self) -> Option<Kind> {
        self.kind
    }

    pub fn layer(&self) -> Layer {
        self.layer
    }

    /// The message, as `Display` shows it.
    pub fn message(&self) -> &str {
        &self.msg
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Formats an OS error the way our messages show it: `EPERM`, `ENOENT (no such file or directory)`
/// is too long for one line, so we keep the errno name only.
fn errno_name(e: Errno) -> String {
    format!("{e:?}")
}

/// Turns a std io error into a short text: the errno name when there is one.
fn io_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => errno_name(Errno::from_raw(code)),
        None => e.to_string(),
    }
}

/// Adds context to lower-level errors, the one way to do so: the message
/// becomes `<what>: <error>` (an errno shows as its name, `EPERM`) and the
/// errno, kind and source stay on the [`Error`]. `ctx` builds the message
/// lazily so the hot path never formats strings that are not needed.
pub trait Context<T> {
    fn ctx<F, S>(self, layer: fn(String) -> Error, what: F) -> Result<T>
    where
        F: FnOnce() -> S,
        S: Display;
}

fn with_context<S: Display>(
    layer: fn(String) -> Error,
    what: S,
    text: impl Display,
    errno: Option<Errno>,
) -> Error {
    let mut e = layer(format!("{what}: {text}"));
    e.errno = errno;
    e
}

impl<T> Context<T> for std::result::Result<T, Errno> {
    fn ctx<F, S>(self, layer: fn(String) -> Error, what: F) -> Result<T>
    where
        F: FnOnce() -> S,
        S: Display,
    {
        self.map_err(|e| with_context(layer, what(), errno_name(e), Some(e)))
    }
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn ctx<F, S>(self, layer: fn(String) -> Error, what: F) -> Result<T>
    where
        F: FnOnce() -> S,
        S: Display,
    {
        self.map_err(|e| {
            let errno = e.raw_os_error().map(Errno::from_raw);
            with_context(layer, what(), io_text(&e), errno)
        })
    }
}

impl<T> Context<T> for std::result::Result<T, rustix::io::Errno> {
    fn ctx<F, S>(self, layer: fn(String) -> Error, what: F) -> Result<T>
    where
        F: FnOnce() -> S,
        S: Display,
    {
        self.map_err(|e| {
            let e = Errno::from_raw(e.raw_os_error());
            with_context(layer, what(), errno_name(e), Some(e))
        })
    }
}

impl<T> Context<T> for std::result::Result<T, pathrs::error::Error> {
    fn ctx<F, S>(self, layer: fn(String) -> Error, what: F) -> Result<T>
    where
        F: FnOnce() -> S,
        S: Display,
    {
        self.map_err(|e| match e.kind() {
            pathrs::error::ErrorKind::OsError(Some(code)) => {
                let errno = Errno::from_raw(code);
                with_context(layer, what(), errno_name(errno), Some(errno))
            }
            _ => with_context(layer, what(), e, None),
        })
    }
}

/// An error of ours gets a prefix and may move to the caller's layer; its
/// errno and kind stay.
impl<T> Context<T> for Result<T> {
    fn ctx<F, S>(self, layer: fn(String) -> Error, what: F) -> Result<T>
    where
        F: FnOnce() -> S,
        S: Display,
    {
        self.map_err(|e| {
            let mut out = with_context(layer, what(), &e.msg, e.errno);
            out.kind = e.kind;
            out
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
        assert_eq!(e.errno(), Some(nix::errno::Errno::EPERM));
        assert_eq!(e.layer(), Layer::Rootfs);
        assert_eq!(e.kind(), None);
    }

    #[test]
    fn io_context_keeps_the_errno() {
        let r = std::fs::read("/nonexistent/ocirun-test");
        let e = r
            .ctx(Error::Spec, || "read /nonexistent/ocirun-test")
            .unwrap_err();
        assert_eq!(e.to_string(), "read /nonexistent/ocirun-test: ENOENT");
        assert_eq!(e.errno(), Some(Errno::ENOENT));
        assert_eq!(e.layer(), Layer::Spec);
    }

    #[test]
    fn io_context_without_errno_shows_the_text() {
        let r: std::result::Result<(), _> = Err(std::io::Error::other("short read"));
        let e = r.ctx(Error::Image, || "read layer").unwrap_err();
        assert_eq!(e.to_string(), "read layer: short read");
        assert_eq!(e.errno(), None);
    }

    #[test]
    fn rustix_context_keeps_the_errno() {
        let r: std::result::Result<(), _> = Err(rustix::io::Errno::ACCESS);
        let e = r
            .ctx(Error::Cgroup, || "write /sys/fs/cgroup/x")
            .unwrap_err();
        assert_eq!(e.to_string(), "write /sys/fs/cgroup/x: EACCES");
        assert_eq!(e.errno(), Some(Errno::EACCES));
    }

    #[test]
    fn pathrs_context_keeps_the_errno() {
        let root = pathrs::Root::open("/").unwrap();
        let e = root
            .resolve("nonexistent/ocirun-test")
            .ctx(Error::Rootfs, || "resolve /nonexistent/ocirun-test")
            .unwrap_err();
        assert_eq!(e.to_string(), "resolve /nonexistent/ocirun-test: ENOENT");
        assert_eq!(e.errno(), Some(Errno::ENOENT));
    }

    #[test]
    fn context_on_our_error_keeps_errno_and_kind() {
        let inner = Error::Container("container x does not exist".into())
            .with_kind(Kind::NotFound)
            .with_errno(Errno::ENOENT);
        let e = Err::<(), _>(inner)
            .ctx(Error::Process, || "exec in x")
            .unwrap_err();
        assert_eq!(e.to_string(), "exec in x: container x does not exist");
        assert_eq!(e.kind(), Some(Kind::NotFound));
        assert_eq!(e.errno(), Some(Errno::ENOENT));
        assert_eq!(e.layer(), Layer::Process);
    }

    #[test]
    fn constructors_carry_the_message_alone() {
        let e = Error::Usage("invalid size \"x\": expected e.g. 512m".into());
        assert_eq!(e.to_string(), "invalid size \"x\": expected e.g. 512m");
        assert_eq!(e.message(), e.to_string());
        assert_eq!((e.errno(), e.kind()), (None, None));
        let e = e.with_kind(Kind::Exists).with_errno(Errno::EEXIST);
        assert_eq!(e.kind(), Some(Kind::Exists));
        assert_eq!(e.errno(), Some(Errno::EEXIST));
        assert_eq!(e.to_string(), "invalid size \"x\": expected e.g. 512m");
    }
}
