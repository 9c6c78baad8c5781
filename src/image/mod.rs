//! The image unpacker: an OCI image layout to a runtime bundle.
//!
//! Layers are decompressed ahead on worker threads (bounded buffers) while
//! the main thread applies them in order; each worker verifies the blob's
//! size and digest and the uncompressed diff_id as it streams. Everything is
//! unpacked into a temporary directory beside the bundle and renamed into
//! place at the end, so a failure leaves no half-made bundle.

pub mod blob;
pub mod bundle;
pub mod layer;
pub mod layout;
pub mod owner;

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use oci_spec::image::{Descriptor, Digest};
use serde::Serialize;

use crate::error::{Context, Error, Result};
use layout::Platform;

const CHUNK: usize = 256 << 10;
const AHEAD_CHUNKS: usize = 32; // 8 MiB of decompressed data per layer in flight

/// Compression of a layer, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

pub fn compression(media_type: &str) -> Result<Compression> {
    Ok(match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Compression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd" => Compression::Zstd,
        "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            // Usable only if the blob happens to be present; treat like the distributable type.
            if media_type.ends_with("zstd") {
                Compression::Zstd
            } else if media_type.ends_with("tar") {
                Compression::None
            } else {
                Compression::Gzip
            }
        }
        other => {
            return Err(Error::Image(format!(
                "unsupported layer media type {other:?}"
            )));
        }
    })
}

/// Hashes what passes through and checks the diff_id at EOF.
struct DiffIdCheck<R> {
    inner: R,
    hasher: Option<blob::Hasher>,
    want: Digest,
}

impl<R: Read> Read for DiffIdCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        if n == 0
            && !buf.is_empty()
            && let Some(h) = self.hasher.take()
        {
            let got = h.hex();
            if got != self.want.digest() {
                return Err(io::Error::other(format!(
                    "layer diff_id mismatch: uncompressed content is {}:{got}, config says {}",
                    self.want.algorithm(),
                    self.want
                )));
            }
        }
        Ok(n)
    }
}

/// Opens a layer as a stream of uncompressed, verified bytes.
fn layer_stream(layout: &Path, d: &Descriptor, diff_id: &str) -> Result<Box<dyn Read + Send>> {
    let comp = compression(d.media_type().as_ref())?;
    let want: Digest = diff_id
        .parse()
        .map_err(|e| Error::Image(format!("diff_id {diff_id:?}: {e}")))?;
    let hasher = Some(blob::Hasher::new(want.algorithm())?);
    let raw = io::BufReader::with_capacity(CHUNK, blob::open(layout, d)?);
    let inner: Box<dyn Read + Send> = match comp {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(raw)
                .map_err(|e| Error::Image(format!("zstd layer {}: {e}", d.digest())))?,
        ),
    };
    Ok(Box::new(DiffIdCheck {
        inner,
        hasher,
        want,
    }))
}

/// The reading end of a worker thread's decompressed stream.
struct Ahead {
    rx: Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for Ahead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) if chunk.is_empty() => self.done = true,
                Ok(Ok(chunk)) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::other("layer worker ended early")),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Ahead {
    /// Reads whatever the tar parser left (padding, trailing blocks) so the
    /// worker reaches EOF and its digest checks run; returns their verdict.
    fn finish(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(drop)
    }
}

fn spawn_worker(mut src: Box<dyn Read + Send>) -> (Ahead, JoinHandle<()>) {
    let (tx, rx): (SyncSender<io::Result<Vec<u8>>>, _) = sync_channel(AHEAD_CHUNKS);
    let h = std::thread::spawn(move || {
        loop {
            let mut chunk = vec![0u8; CHUNK];
            let mut filled = 0;
            let r = loop {
                match src.read(&mut chunk[filled..]) {
                    Ok(0) => break Ok(true),
                    Ok(n) => {
                        filled += n;
                        if filled == CHUNK {
                            break Ok(false);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            chunk.truncate(filled);
            match r {
                Ok(eof) => {
                    if !chunk.is_empty() && tx.send(Ok(chunk)).is_err() {
                        return;
                    }
                    if eof {
                        let _ = tx.send(Ok(Vec::new()));
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    (
        Ahead {
            rx,
            cur: Vec::new(),
            pos: 0,
            done: false,
        },
        h,
    )
}

pub struct UnpackOpts<'a> {
    pub image: &'a str,
    pub platform: Option<&'a str>,
    pub bundle: &'a Path,
    /// Print progress (bytes and layers) to stderr.
    pub progress: bool,
    /// Without privilege (`--rootless`): files owned by the caller, owners
    /// in `user.rootlesscontainers`, no device nodes (`layer::Applier`).
    pub rootless: bool,
}

/// What an unpack did, and what the caller should be told.
#[derive(Debug, Default)]
pub struct Unpacked {
    pub stats: layer::Stats,
    /// One line each: what a rootless unpack could not keep, the image
    /// user a rootless config.json does not run as.
    pub warnings: Vec<String>,
}

/// `ocirun unpack`.
pub fn unpack(o: &UnpackOpts) -> Result<Unpacked> {
    let (dir, reference) = layout::split_image_arg(o.image);
    let want = o.platform.map(Platform::parse).transpose()?;
    let image = layout::resolve(&dir, reference.as_deref(), want.as_ref())?;
    let bundle = std::path::absolute(o.bundle)
        .map_err(|e| Error::Image(format!("bundle {}: {e}", o.bundle.display())))?;
    if let Ok(mut rd) = std::fs::read_dir(&bundle)
        && rd.next().is_some()
    {
        return Err(Error::Image(format!(
            "bundle {} exists and is not empty",
            bundle.display()
        )));
    }
    let parent = bundle.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).ctx(Error::Image, || format!("create {}", parent.display()))?;
    let name = bundle.file_name().unwrap_or_default().to_string_lossy();
    remove_stale_staging(parent, &name);
    let tmp = parent.join(format!(".{name}.unpack-{}", std::process::id()));
    let _cleanup = CleanupOnSignal::start(tmp.clone());
    let r = make_staging(&tmp, &bundle)
        .and_then(|()| unpack_into(&dir, &image, &tmp, o))
        .and_then(|done| {
            if bundle.exists() {
                std::fs::remove_dir(&bundle).ctx(Error::Image, || {
                    format!("replace empty {}", bundle.display())
                })?;
            }
            std::fs::rename(&tmp, &bundle).ctx(Error::Image, || {
                format!("rename {} to {}", tmp.display(), bundle.display())
            })?;
            Ok(done)
        });
    if r.is_err() {
        if CleanupOnSignal::fired() {
            // The failure is the signal's cleanup removing the tree under
            // us: that thread ends the process with the signal's status.
            loop {
                std::thread::park();
            }
        }
        let _ = remove_tree(&tmp);
    }
    r
}

/// Makes the staging dir `tmp` for `bundle` (one left by a process that had
/// our pid is replaced); the error names the bundle.
fn make_staging(tmp: &Path, bundle: &Path) -> Result<()> {
    let made = match std::fs::create_dir(tmp) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            remove_tree(tmp).and_then(|()| std::fs::create_dir(tmp))
        }
        r => r,
    };
    made.ctx(Error::Image, || {
        format!("create bundle {}", bundle.display())
    })
}

/// Removes a staging tree. Without privilege a directory whose mode lacks
/// the owner's rwx (a layer's 0555 or 0000, set at the end) cannot be
/// emptied: such directories, the caller's own, are opened up first.
fn remove_tree(p: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(p) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            open_up(p);
            std::fs::remove_dir_all(p)
        }
        r => r,
    }
}

/// Adds u+rwx to `dir` and every directory under it, never through a
/// symlink (the mode is changed through an O_PATH fd of the directory).
fn open_up(dir: &Path) {
    use nix::fcntl::{AT_FDCWD, OFlag, openat};
    use nix::sys::stat::{Mode, fstat};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::PermissionsExt;
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let Ok(fd) = openat(AT_FDCWD, dir, flags, Mode::empty()) else {
        return;
    };
    let Ok(st) = fstat(&fd) else { return };
    if st.st_mode & 0o700 != 0o700 {
        let fd_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let mode = std::fs::Permissions::from_mode((st.st_mode | 0o700) & 0o7777);
        let _ = std::fs::set_permissions(fd_path, mode);
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            open_up(&e.path());
        }
    }
}

/// Removes `.<name>.unpack-<pid>` staging dirs left in `parent` by an
/// unpack of the same bundle that was killed (its pid no longer exists).
fn remove_stale_staging(parent: &Path, name: &str) {
    let prefix = format!(".{name}.unpack-");
    let Ok(rd) = std::fs::read_dir(parent) else {
        return;
    };
    for e in rd.flatten() {
        let file = e.file_name();
        let Some(pid) = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let gone = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if gone {
            crate::logging::debug(|| format!("removing stale {}", e.path().display()));
            let _ = remove_tree(&e.path());
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP during an unpack remove its staging dir, then
/// end the process with the signal's status (128+N). The signals are
/// blocked before the worker threads exist, so only this thread takes them.
struct CleanupOnSignal;

static SIGNALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl CleanupOnSignal {
    /// Whether a signal's cleanup has begun.
    fn fired() -> bool {
        SIGNALLED.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn start(tmp: std::path::PathBuf) -> CleanupOnSignal {
        use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
        let mut set = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            set.add(s);
        }
        if sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).is_err() {
            return CleanupOnSignal;
        }
        std::thread::spawn(move || {
            let Ok(sig) = set.wait() else { return };
            SIGNALLED.store(true, std::sync::atomic::Ordering::SeqCst);
            // The applier may still be adding entries: retry until the
            // tree is gone (an unlinked directory takes no new ones).
            for _ in 0..50 {
                match remove_tree(&tmp) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => continue,
                    _ => break,
                }
            }
            std::process::exit(128 + sig as i32);
        });
        CleanupOnSignal
    }
}

fn unpack_into(
    dir: &Path,
    image: &layout::Resolved,
    tmp: &Path,
    o: &UnpackOpts,
) -> Result<Unpacked> {
    let progress = o.progress;
    let rootfs = tmp.join("rootfs");
    std::fs::create_dir(&rootfs).ctx(Error::Image, || format!("create {}", rootfs.display()))?;
    std::fs::set_permissions(&rootfs, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .ctx(Error::Image, || format!("chmod {}", rootfs.display()))?;
    let layers = image.manifest.layers();
    let diff_ids = image.config.rootfs().diff_ids();
    // Open every layer first: a missing blob fails before any work is done.
    let mut streams = Vec::with_capacity(layers.len());
    for (d, id) in layers.iter().zip(diff_ids) {
        streams.push(layer_stream(dir, d, id)?);
    }
    let mut workers: Vec<(Ahead, JoinHandle<()>)> = streams.into_iter().map(spawn_worker).collect();
    let mut applier = layer::Applier::new(&rootfs, o.rootless)?;
    let mut total = layer::Stats::default();
    let n = workers.len();
    for (i, (ahead, _)) in workers.iter_mut().enumerate() {
        let d = &layers[i];
        if progress {
            applier.progress = Some(format!("layer {}/{n}", i + 1));
        }
        let stats = applier
            .apply(&mut *ahead)
            .ctx(Error::Image, || format!("layer {} ({})", i + 1, d.digest()))?;
        ahead
            .finish()
            .map_err(|e| Error::Image(format!("layer {} ({}): {e}", i + 1, d.digest())))?;
        total.add(&stats);
        if progress {
            eprint!(
                "\rlayer {}/{n}: {} entries, {} MB of files",
                i + 1,
                total.entries,
                total.bytes >> 20
            );
        }
    }
    if progress {
        eprintln!();
    }
    for (_, h) in workers {
        let _ = h.join();
    }
    let (spec, user_note) = bundle::config_for(
        &image.config,
        applier.root(),
        image.manifest.annotations().as_ref(),
        o.rootless,
    )?;
    applier.finish()?;
    drop(applier); // restores the umask before config.json is written
    let text = serde_json::to_vec_pretty(&spec).expect("spec serialises");
    std::fs::write(tmp.join("config.json"), text).ctx(Error::Image, || "write config.json")?;
    let warnings = total
        .rootless_summary()
        .into_iter()
        .chain(user_note)
        .collect();
    Ok(Unpacked {
        stats: total,
        warnings,
    })
}

/// `ocirun image inspect`: the resolved manifest, config and layers.
#[derive(Serialize)]
pub struct Inspect {
    pub layout: PathBuf,
    pub manifest_digest: String,
    pub manifest: serde_json::Value,
    pub config: serde_json::Value,
    pub layers: Vec<serde_json::Value>,
}

pub fn inspect(image: &str, platform: Option<&str>) -> Result<Inspect> {
    let (dir, reference) = layout::split_image_arg(image);
    let want = platform.map(Platform::parse).transpose()?;
    let image = layout::resolve(&dir, reference.as_deref(), want.as_ref())?;
    let layers = image
        .manifest
        .layers()
        .iter()
        .zip(image.config.rootfs().diff_ids())
        .map(|(d, id)| serde_json::json!({"mediaType": d.media_type().to_string(), "digest": d.digest().to_string(), "size": d.size(), "diffID": id}))
        .collect();
    Ok(Inspect {
        layout: dir,
        manifest_digest: image.manifest_desc.digest().to_string(),
        manifest: serde_json::to_value(&image.manifest).expect("manifest serialises"),
        config: serde_json::to_value(&image.config).expect("config serialises"),
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an unprivileged caller needs to remove a staging tree holding
    /// a layer's 0000 and 0555 directories.
    #[test]
    fn open_up_gives_the_owner_every_directory() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let d = std::env::temp_dir().join(format!("ocirun-open-up-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::create_dir_all(d.join("elsewhere")).unwrap();
        std::fs::write(d.join("a/b/f"), "f").unwrap();
        std::os::unix::fs::symlink("../elsewhere", d.join("a/link")).unwrap();
        let set = |p: &str, m: u32| {
            std::fs::set_permissions(d.join(p), std::fs::Permissions::from_mode(m)).unwrap()
        };
        set("elsewhere", 0o500);
        set("a/b/f", 0o400);
        set("a/b", 0o2555);
        set("a", 0o000);
        open_up(&d.join("a"));
        let mode = |p: &str| std::fs::symlink_metadata(d.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("a"), 0o700);
        assert_eq!(mode("a/b"), 0o2755);
        assert_eq!(mode("a/b/f"), 0o400, "files are left alone");
        assert_eq!(mode("elsewhere"), 0o500, "a symlink is not followed");
        remove_tree(&d).unwrap();
        assert!(!d.exists());
    }

    #[test]
    fn media_types() {
        assert_eq!(
            compression("application/vnd.oci.image.layer.v1.tar+gzip").unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            compression("application/vnd.docker.image.rootfs.diff.tar.gzip").unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            compression("application/vnd.oci.image.layer.v1.tar+zstd").unwrap(),
            Compression::Zstd
        );
        assert_eq!(
            compression("application/vnd.oci.image.layer.v1.tar").unwrap(),
            Compression::None
        );
        assert!(compression("application/vnd.oci.image.layer.v1.tar+bzip2").is_err());
    }
}
