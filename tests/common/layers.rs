//! Image layouts built in code for the unpack tests: tar layers of any
//! entry (hostile names included), layouts of them, and a view of an
//! unpacked tree to compare with umoci's.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub fn hexd(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// One tar entry of a test layer.
pub enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a str, u32),
    Owned(&'a str, &'a str, u32, u64, u64),
    Xattr(&'a str, &'a str, &'a str, &'a [u8]),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Fifo(&'a str),
    Char(&'a str, u32, u32),
    Block(&'a str, u32, u32),
    /// The owner (uid, gid) of the entries that follow, 0:0 until then.
    Owner(u64, u64),
    /// A name written raw into the header (no checks), e.g. "../x".
    Raw(&'a str, &'a str),
    RawHard(&'a str, &'a str),
}

pub fn pax(b: &mut tar::Builder<Vec<u8>>, recs: &[(&str, &[u8])]) {
    let mut data = Vec::new();
    for (k, v) in recs {
        let body = [k.as_bytes(), b"=", v, b"\n"].concat();
        let mut len = body.len() + 1;
        while (len.to_string().len() + 1 + body.len()) != len {
            len = len.to_string().len() + 1 + body.len();
        }
        data.extend_from_slice(format!("{len} ").as_bytes());
        data.extend_from_slice(&body);
    }
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_path("PaxHeader").unwrap();
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, &data[..]).unwrap();
}

pub fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_000_000);
    h.set_size(0);
    h
}

pub fn raw_name(h: &mut tar::Header, name: &str) {
    let old = h.as_old_mut();
    old.name = [0; 100];
    old.name[..name.len()].copy_from_slice(name.as_bytes());
}

pub fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut owner = (0, 0);
    for e in entries {
        let header = |kind, mode| {
            let mut h = header(kind, mode);
            h.set_uid(owner.0);
            h.set_gid(owner.1);
            h
        };
        match e {
            E::Owner(u, g) => owner = (*u, *g),
            E::Dir(p, m) => {
                let mut h = header(tar::EntryType::Directory, *m);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::File(p, c, m) => {
                let mut h = header(tar::EntryType::Regular, *m);
                h.set_size(c.len() as u64);
                b.append_data(&mut h, p, c.as_bytes()).unwrap();
            }
            E::Owned(p, c, m, u, g) => {
                let mut h = header(tar::EntryType::Regular, *m);
                h.set_size(c.len() as u64);
                h.set_uid(*u);
                h.set_gid(*g);
                b.append_data(&mut h, p, c.as_bytes()).unwrap();
            }
            E::Xattr(p, c, k, v) => {
                pax(&mut b, &[(&format!("SCHILY.xattr.{k}"), v)]);
                let mut h = header(tar::EntryType::Regular, 0o644);
                h.set_size(c.len() as u64);
                b.append_data(&mut h, p, c.as_bytes()).unwrap();
            }
            E::Link(p, t) => {
                let mut h = header(tar::EntryType::Symlink, 0o777);
                b.append_link(&mut h, p, t).unwrap();
            }
            E::Hard(p, t) => {
                let mut h = header(tar::EntryType::Link, 0o644);
                b.append_link(&mut h, p, t).unwrap();
            }
            E::Fifo(p) => {
                let mut h = header(tar::EntryType::Fifo, 0o600);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::Char(p, ma, mi) | E::Block(p, ma, mi) => {
                let (kind, mode) = match e {
                    E::Char(..) => (tar::EntryType::Char, 0o666),
                    _ => (tar::EntryType::Block, 0o660),
                };
                let mut h = header(kind, mode);
                h.set_device_major(*ma).unwrap();
                h.set_device_minor(*mi).unwrap();
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::Raw(p, c) => {
                let mut h = header(tar::EntryType::Regular, 0o644);
                raw_name(&mut h, p);
                h.set_size(c.len() as u64);
                h.set_cksum();
                b.append(&h, c.as_bytes()).unwrap();
            }
            E::RawHard(p, t) => {
                let mut h = header(tar::EntryType::Link, 0o644);
                raw_name(&mut h, p);
                let old = h.as_old_mut();
                old.linkname = [0; 100];
                old.linkname[..t.len()].copy_from_slice(t.as_bytes());
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

#[derive(Clone, Copy)]
pub enum Comp {
    Plain,
    Gzip,
    Zstd,
}

/// Writes an image layout with the given layers; returns the layout dir.
pub fn layout(
    dir: &Path,
    layers: &[(Comp, Vec<u8>)],
    config: Value,
    platforms: &[(&str, &str)],
) -> PathBuf {
    let l = dir.join("layout");
    std::fs::create_dir_all(l.join("blobs/sha256")).unwrap();
    let put = |data: &[u8]| -> (String, usize) {
        let d = hexd(data);
        std::fs::write(l.join("blobs/sha256").join(&d), data).unwrap();
        (format!("sha256:{d}"), data.len())
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (c, tar) in layers {
        diff_ids.push(format!("sha256:{}", hexd(tar)));
        let (data, mt) = match c {
            Comp::Plain => (tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
            Comp::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(tar).unwrap();
                (
                    e.finish().unwrap(),
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                )
            }
            Comp::Zstd => (
                zstd::encode_all(&tar[..], 3).unwrap(),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
        };
        let (d, s) = put(&data);
        descs.push(json!({"mediaType": mt, "digest": d, "size": s}));
    }
    let mut manifests = Vec::new();
    let plats: Vec<(&str, &str)> = if platforms.is_empty() {
        vec![("linux", "amd64")]
    } else {
        platforms.to_vec()
    };
    for (os, arch) in &plats {
        let mut cfg = config.clone();
        cfg["os"] = json!(os);
        cfg["architecture"] = json!(arch);
        cfg["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
        let (cd, cs) = put(&serde_json::to_vec(&cfg).unwrap());
        let m = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs}, "layers": descs});
        let (md, ms) = put(&serde_json::to_vec(&m).unwrap());
        let mut desc = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
            "annotations": {"org.opencontainers.image.ref.name": format!("{arch}")}});
        if !platforms.is_empty() {
            desc["platform"] = json!({"os": os, "architecture": arch});
        }
        manifests.push(desc);
    }
    std::fs::write(l.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        l.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).unwrap(),
    )
    .unwrap();
    l
}

pub fn json_at(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Where a blob of the layout lives.
pub fn blob_path(l: &Path, digest: &str) -> PathBuf {
    l.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The first manifest named by the layout's index.json.
pub fn first_manifest(l: &Path) -> Value {
    let idx = json_at(&l.join("index.json"));
    json_at(&blob_path(
        l,
        idx["manifests"][0]["digest"].as_str().unwrap(),
    ))
}

/// path -> "type mode uid:gid extra" for every entry under `root`.
pub fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let extra = if ft.is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_file() {
                format!("{} nlink={}", hexd(&std::fs::read(&p).unwrap()), m.nlink())
            } else if ft.is_char_device() || ft.is_block_device() {
                format!("dev={}", m.rdev())
            } else {
                String::new()
            };
            let kind = if ft.is_dir() {
                "d"
            } else if ft.is_symlink() {
                "l"
            } else if ft.is_file() {
                "f"
            } else if ft.is_fifo() {
                "p"
            } else if ft.is_block_device() {
                "b"
            } else {
                "c"
            };
            let mode = if ft.is_symlink() {
                0
            } else {
                m.mode() & 0o7777
            };
            out.insert(
                rel,
                format!("{kind} {mode:o} {}:{} {extra}", m.uid(), m.gid()),
            );
            if ft.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// path -> "name=0xhex ..." for every entry under `root` with xattrs (as
/// `getfattr -d -m - -e hex` shows them, symlinks themselves).
pub fn xattrs(root: &Path) -> BTreeMap<String, String> {
    let o = Command::new("getfattr")
        .args(["-R", "-h", "-d", "-m", "-", "-e", "hex", "--absolute-names"])
        .arg(root)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "getfattr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut all: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cur: Option<String> = None;
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        if let Some(p) = line.strip_prefix("# file: ") {
            let rel = Path::new(p).strip_prefix(root).unwrap();
            cur = Some(rel.to_string_lossy().into_owned());
        } else if let (Some(p), false) = (&cur, line.is_empty()) {
            all.entry(p.clone()).or_default().push(line.to_string());
        }
    }
    all.into_iter()
        .map(|(p, mut v)| {
            v.sort();
            (p, v.join(" "))
        })
        .collect()
}

pub fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let o = Command::new("getfattr")
        .args(["--only-values", "-h", "-n", name])
        .arg(path)
        .output()
        .ok()?;
    o.status.success().then_some(o.stdout)
}

pub fn layers_semantics() -> Vec<(Comp, Vec<u8>)> {
    let long_name = format!("lngdir/{}", "n".repeat(150));
    let cap = [
        1u8, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let l1 = tar_of(&[
        E::Dir("a/", 0o755),
        E::Dir("a/b/", 0o750),
        E::File("a/b/f1", "one", 0o644),
        E::File("a/keep", "keep me?", 0o644),
        E::Dir("d/", 0o755),
        E::File("d/x", "x", 0o644),
        E::Dir("d/sub/", 0o755),
        E::File("d/sub/y", "y", 0o644),
        E::Dir("o/", 0o755),
        E::File("o/lower1", "l1", 0o644),
        E::Dir("o/sub/", 0o755),
        E::File("o/sub/lower2", "l2", 0o644),
        E::Dir("bin/", 0o755),
        E::Owned("bin/su", "setuid", 0o4755, 0, 0),
        E::Owned("bin/owned", "by 1000", 0o640, 1000, 1001),
        E::Xattr("bin/ping", "ping", "security.capability", &cap),
        E::Xattr("a/xf", "x", "user.note", b"hello"),
        E::Dir("tmp/", 0o1777),
        E::Link("s", "a/b"),
        E::Hard("a/h1", "a/b/f1"),
        E::Fifo("p"),
        E::Char("c", 1, 3),
        E::Dir("lngdir/", 0o755),
        E::File(&long_name, "long name", 0o644),
    ]);
    let l2 = tar_of(&[
        E::File(".wh.d", "", 0o644),
        E::Dir("d/", 0o700),
        E::File("d/new", "new", 0o644),
        E::File("a/.wh.keep", "", 0o644),
        E::File("o/before", "same layer, before the marker", 0o644),
        E::File("o/.wh..wh..opq", "", 0o644),
        E::File("o/after", "same layer, after the marker", 0o644),
        E::Hard("bin/su2", "bin/su"),
        E::File("gone-later", "x", 0o644),
    ]);
    let l3 = tar_of(&[
        // A symlink replaces a directory, a directory replaces a symlink.
        E::Link("a/b", "/etc"),
        E::Dir("s/", 0o755),
        E::File("s/inside", "in s", 0o644),
        E::File(".wh.gone-later", "", 0o644),
        E::File(".wh.never-existed", "", 0o644),
    ]);
    vec![(Comp::Gzip, l1), (Comp::Zstd, l2), (Comp::Plain, l3)]
}
