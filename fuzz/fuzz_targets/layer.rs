//! Image layers applied by the unpacker (`image::layer::Applier`) into a
//! temporary rootfs: crafted tars (absolute and `..` names, symlinks and
//! hardlinks pointing up or to a host directory, whiteouts over them,
//! several layers) or raw bytes. Whatever the layers hold, nothing outside
//! the rootfs may change: a sentinel directory beside it keeps exactly its
//! one file and both their modes, and the parent holds only the two.
#![no_main]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Part {
    A,
    B,
    C,
    Dot,
    DotDot,
    Sentinel,
    /// The sentinel's absolute host path (as a name or a link target).
    HostSentinel,
    Whiteout,
    Opaque,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(Vec<Part>),
    Hardlink(Vec<Part>),
    Fifo,
}

#[derive(Arbitrary, Debug)]
struct Entry {
    absolute: bool,
    name: Vec<Part>,
    kind: Kind,
    mode: u16,
}

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(Vec<u8>),
    Layers(Vec<Vec<Entry>>),
}

fn base() -> &'static Path {
    static B: OnceLock<PathBuf> = OnceLock::new();
    B.get_or_init(|| {
        let b = std::env::temp_dir().join(format!("ocirun-fuzz-layer-{}", std::process::id()));
        fs::create_dir_all(&b).unwrap();
        b
    })
}

fn name(parts: &[Part], absolute: bool) -> Vec<u8> {
    let sentinel = base().join("sentinel");
    let mut out: Vec<u8> = if absolute { b"/".to_vec() } else { Vec::new() };
    for (i, p) in parts.iter().enumerate() {
        if i > 0 && !out.ends_with(b"/") {
            out.push(b'/');
        }
        let s: &[u8] = match p {
            Part::A => b"a",
            Part::B => b"b",
            Part::C => b"c",
            Part::Dot => b".",
            Part::DotDot => b"..",
            Part::Sentinel => b"sentinel",
            Part::HostSentinel => sentinel.as_os_str().as_encoded_bytes(),
            Part::Whiteout => b".wh.a",
            Part::Opaque => b".wh..wh..opq",
            Part::Other(s) => s.as_bytes(),
        };
        out.extend_from_slice(s);
    }
    out.truncate(99);
    out
}

fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        let (kind, data, link): (tar::EntryType, &[u8], Option<Vec<u8>>) = match &e.kind {
            Kind::File(d) => (tar::EntryType::Regular, d, None),
            Kind::Dir => (tar::EntryType::Directory, &[], None),
            Kind::Symlink(t) => (tar::EntryType::Symlink, &[], Some(name(t, false))),
            Kind::Hardlink(t) => (tar::EntryType::Link, &[], Some(name(t, false))),
            Kind::Fifo => (tar::EntryType::Fifo, &[], None),
        };
        h.set_entry_type(kind);
        h.set_mode(u32::from(e.mode) & 0o7777);
        h.set_size(data.len() as u64);
        h.set_mtime(1);
        // Raw names: the tar crate's setters refuse `..`, layers need not.
        let n = name(&e.name, e.absolute);
        let old = h.as_old_mut();
        old.name[..n.len()].copy_from_slice(&n);
        if let Some(l) = link {
            old.linkname[..l.len()].copy_from_slice(&l);
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn check_outside(what: &str) {
    let mut top: Vec<_> = fs::read_dir(base())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    top.sort();
    assert_eq!(
        top,
        ["rootfs", "sentinel"],
        "{what}: something appeared beside the rootfs"
    );
    let s = base().join("sentinel");
    let names: Vec<_> = fs::read_dir(&s)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["keep"], "{what}: the sentinel directory changed");
    let m = fs::symlink_metadata(s.join("keep")).unwrap();
    assert!(m.is_file(), "{what}: sentinel file replaced");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        m.mode() & 0o7777,
        0o600,
        "{what}: sentinel file's mode changed"
    );
    let d = fs::symlink_metadata(&s).unwrap();
    assert_eq!(
        d.mode() & 0o7777,
        0o750,
        "{what}: sentinel directory's mode changed"
    );
    assert_eq!(
        fs::read(s.join("keep")).unwrap(),
        b"keep",
        "{what}: sentinel written"
    );
}

fuzz_target!(|input: Input| {
    let b = base();
    let rootfs = b.join("rootfs");
    let _ = fs::remove_dir_all(&rootfs);
    let sentinel = b.join("sentinel");
    let _ = fs::remove_dir_all(&sentinel);
    fs::create_dir_all(&rootfs).unwrap();
    fs::create_dir_all(&sentinel).unwrap();
    fs::write(sentinel.join("keep"), b"keep").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(sentinel.join("keep"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(&sentinel, fs::Permissions::from_mode(0o750)).unwrap();
    let layers: Vec<Vec<u8>> = match &input {
        Input::Raw(bytes) => vec![bytes.clone()],
        Input::Layers(ls) => ls.iter().take(4).map(|l| tar_of(l)).collect(),
    };
    let Ok(mut applier) = ocirun::image::layer::Applier::new(&rootfs, false) else {
        panic!("cannot open the rootfs");
    };
    for l in &layers {
        let _ = applier.apply(&l[..]);
        check_outside("after a layer");
    }
    let _ = applier.finish();
    check_outside("after the directory modes");
    drop(applier);
    check_outside("at the end");
});
