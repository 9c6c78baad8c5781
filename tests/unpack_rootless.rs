//! `ocirun unpack` run by an ordinary user (`rtuser`, made here if
//! missing, as runtime-tests/tests/rootless.rs does): owners kept in the
//! `user.rootlesscontainers` xattr and the same tree as `umoci unpack
//! --rootless`, read-only directories across layers, bad input, and the
//! bundle run rootless as it is.

mod common;

use common::layers::{Comp, E, blob_path, first_manifest, layers_semantics, layout, tar_of};
use common::layers::{tree, xattr, xattrs};
use common::{Tmp, bin, busybox_image, tmp};

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

/// rtuser's uid and gid (runtime-tests' test user, made if missing).
fn user() -> (u32, u32) {
    runtime_tests::test_user()
}

/// A scratch dir under /tmp (root's, 0755: rtuser reads the images built
/// there) with a copy of the binary (the build tree need not be reachable
/// by rtuser) and `out/`, rtuser's own, where bundles go.
struct Scratch {
    t: Tmp,
    bin: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let (uid, gid) = user();
        let t = tmp(name);
        fs::set_permissions(&t.0, fs::Permissions::from_mode(0o755)).unwrap();
        let bin_copy = t.0.join("ocirun");
        fs::copy(bin(), &bin_copy).unwrap();
        fs::set_permissions(&bin_copy, fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(t.0.join("out")).unwrap();
        nix::unistd::chown(
            &t.0.join("out"),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .unwrap();
        Scratch { t, bin: bin_copy }
    }

    fn dir(&self) -> &Path {
        &self.t.0
    }

    fn out(&self) -> PathBuf {
        self.t.0.join("out")
    }

    /// `program args` as rtuser (its uid, gid and groups), in `out/`.
    fn as_user(&self, program: &Path, args: &[&str]) -> Output {
        let (uid, gid) = user();
        Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--init-groups",
                "--",
            ])
            .arg(program)
            .args(args)
            .env_remove("XDG_RUNTIME_DIR")
            .current_dir(self.out())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `ocirun unpack --image IMAGE BUNDLE` as rtuser.
    fn unpack(&self, image: &str, bundle: &Path, global: &[&str]) -> Output {
        let mut args = global.to_vec();
        args.extend(["unpack", "--image", image, bundle.to_str().unwrap()]);
        self.as_user(&self.bin, &args)
    }

    fn unpack_ok(&self, image: &str, bundle: &Path) -> String {
        let o = self.unpack(image, bundle, &[]);
        assert!(o.status.success(), "unpack failed: {}", text(&o.stderr));
        text(&o.stderr)
    }

    /// The names in `out/`.
    fn left(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.out())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Owners other than root's, on every kind of entry; read-only, unlistable
/// and unsearchable directories that the second layer adds to and whites
/// out in; a layer's own `user.rootlesscontainers`; a block device and a
/// hard link to it.
fn layers_owners() -> Vec<(Comp, Vec<u8>)> {
    let l1 = tar_of(&[
        E::Dir("etc/", 0o755),
        E::File("etc/root", "r", 0o644),
        E::Owned("etc/u1000", "u", 0o640, 1000, 1000),
        E::Owned("etc/g5", "g", 0o620, 0, 5),
        E::Owned("etc/u33", "w", 0o600, 33, 0),
        E::Owned("big", "b", 0o644, 100_000, 200_000),
        E::Owned("suid", "s", 0o4755, 0, 0),
        E::Owned("sgid", "s", 0o2755, 0, 5),
        E::Owned("suid1000", "s", 0o4711, 1000, 1000),
        E::Dir("home/", 0o755),
        E::Owner(1000, 1000),
        E::Dir("home/user/", 0o750),
        E::File("home/user/x", "x", 0o644),
        E::Link("lnk1000", "etc/u1000"),
        E::Fifo("fifo1000"),
        E::Xattr("spoof", "x", "user.rootlesscontainers", &[0x08, 0x01]),
        E::Owner(0, 6),
        E::Block("loop0", 7, 0),
        E::Owner(0, 0),
        E::Xattr("spoof0", "x", "user.rootlesscontainers", &[0x08, 0x01]),
        E::Dir("ro/", 0o555),
        E::File("ro/a", "a", 0o444),
        E::Owned("ro/b", "b", 0o444, 1000, 1000),
        E::Dir("ro/sub/", 0o555),
        E::File("ro/sub/c", "c", 0o444),
        E::Dir("nox/", 0o644),
        E::File("nox/f", "f", 0o644),
        E::Dir("zero/", 0o000),
        E::File("zero/z", "z", 0o000),
        E::Dir("opq/", 0o555),
        E::File("opq/lower", "l", 0o644),
    ]);
    let l2 = tar_of(&[
        E::File("ro/.wh.a", "", 0o644),
        E::File("ro/new", "n", 0o644),
        E::File("ro/sub/.wh.c", "", 0o644),
        E::Owned("ro/c2", "c", 0o400, 33, 33),
        E::File("nox/.wh.f", "", 0o644),
        E::File("zero/.wh.z", "", 0o644),
        E::File("zero/new", "n", 0o644),
        E::File("opq/.wh..wh..opq", "", 0o644),
        E::File("opq/upper", "u", 0o644),
        E::Hard("hard", "suid1000"),
        E::Hard("hardro", "ro/b"),
        E::Hard("loop0-link", "loop0"),
        E::Owned("etc/u33", "w2", 0o604, 33, 33),
    ]);
    vec![(Comp::Gzip, l1), (Comp::Gzip, l2)]
}

/// The test image: the root unpack tests' layers, then `layers_owners`.
fn image(dir: &Path, owners_only: bool) -> String {
    let mut layers = if owners_only {
        Vec::new()
    } else {
        layers_semantics()
    };
    layers.extend(layers_owners());
    // Debian's umoci 0.4 reads gzip layers only.
    let layers: Vec<_> = layers.into_iter().map(|(_, t)| (Comp::Gzip, t)).collect();
    let l = layout(dir, &layers, json!({"config": {"Cmd": ["sh"]}}), &[]);
    format!("{}:amd64", l.display())
}

#[test]
fn owners_modes_and_read_only_directories() {
    let (uid, gid) = user();
    let s = Scratch::new("owners");
    let img = image(s.dir(), true);
    let b = s.out().join("bundle");
    let warn = s.unpack_ok(&img, &b);
    // One line on what could not be kept: the block device, the owners of
    // the symlink and the fifo.
    assert_eq!(warn.lines().count(), 1, "{warn}");
    assert!(
        warn.starts_with("ocirun: warning: rootless unpack: 2 device nodes skipped")
            && warn.contains("2 owners not kept"),
        "{warn}"
    );
    let r = b.join("rootfs");
    let tr = tree(&r);
    let get = |p: &str| tr.get(p).cloned().unwrap_or_else(|| "MISSING".into());
    // Everything is the caller's.
    let own = format!(" {uid}:{gid} ");
    let others: Vec<_> = tr.iter().filter(|(_, v)| !v.contains(&own)).collect();
    assert!(others.is_empty(), "not {uid}:{gid}: {others:#?}");
    // The image's owners, as umoci writes them.
    let owner = |p: &str| xattr(&r.join(p), "user.rootlesscontainers").map(|v| hex(&v));
    for (p, want) in [
        ("etc/root", None),
        ("etc/u1000", Some("08e80710e807")),
        ("etc/g5", Some("08ffffffff0f1005")),
        ("etc/u33", Some("08211021")),
        ("big", Some("08a08d0610c09a0c")),
        ("suid", None),
        ("sgid", Some("08ffffffff0f1005")),
        ("home/user", Some("08e80710e807")),
        ("home/user/x", Some("08e80710e807")),
        ("ro/b", Some("08e80710e807")),
        ("hardro", Some("08e80710e807")),
        ("ro/c2", Some("08211021")),
        // A layer's own record is replaced by the header's owner.
        ("spoof", Some("08e80710e807")),
        ("spoof0", None),
        // Symlinks and fifos take no user xattrs.
        ("lnk1000", None),
        ("fifo1000", None),
    ] {
        assert_eq!(owner(p).as_deref(), want, "{p}");
    }
    // Modes, setuid and setgid included; no device node.
    for (p, want) in [
        ("suid", "f 4755"),
        ("sgid", "f 2755"),
        ("suid1000", "f 4711"),
        ("hard", "f 4711"),
        ("ro/b", "f 444"),
        ("ro/c2", "f 400"),
        ("etc/u33", "f 604"),
        ("fifo1000", "p 600"),
        ("ro", "d 555"),
        ("ro/sub", "d 555"),
        ("nox", "d 644"),
        ("zero", "d 0"),
        ("opq", "d 555"),
        ("home/user", "d 750"),
    ] {
        assert!(get(p).starts_with(&format!("{want} ")), "{p}: {}", get(p));
    }
    assert!(!tr.contains_key("loop0"), "{}", get("loop0"));
    assert!(!tr.contains_key("loop0-link"), "{}", get("loop0-link"));
    assert_eq!(
        fs::read_to_string(r.join("etc/u33")).unwrap(),
        "w2",
        "replaced in layer 2"
    );
    // Whiteouts and new files inside the read-only directories.
    let names = |d: &str| -> Vec<String> {
        let pre = format!("{d}/");
        tr.keys()
            .filter(|k| k.starts_with(&pre) && !k[pre.len()..].contains('/'))
            .cloned()
            .collect()
    };
    assert_eq!(names("ro"), ["ro/b", "ro/c2", "ro/new", "ro/sub"]);
    assert!(names("ro/sub").is_empty());
    assert!(names("nox").is_empty());
    assert_eq!(names("zero"), ["zero/new"]);
    assert_eq!(names("opq"), ["opq/upper"]);
    assert_eq!(
        fs::metadata(r.join("hard")).unwrap().ino(),
        fs::metadata(r.join("suid1000")).unwrap().ino()
    );
    // config.json runs rootless: the caller mapped to root, as root.
    let c: Value = serde_json::from_slice(&fs::read(b.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        c["linux"]["uidMappings"],
        json!([{"containerID": 0, "hostID": uid, "size": 1}])
    );
    assert_eq!(
        c["linux"]["gidMappings"],
        json!([{"containerID": 0, "hostID": gid, "size": 1}])
    );
    let ns: Vec<&str> = c["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(ns.contains(&"user") && !ns.contains(&"network"), "{ns:?}");
    assert_eq!(c["process"]["user"], json!({"uid": 0, "gid": 0}));
}

#[test]
fn same_tree_and_xattrs_as_umoci_rootless() {
    if Command::new("umoci").arg("--version").output().is_err() {
        panic!("umoci is not installed: scripts/setup installs it");
    }
    let s = Scratch::new("umoci");
    let img = image(s.dir(), false);
    let ours = s.out().join("ours");
    s.unpack_ok(&img, &ours);
    let theirs = s.out().join("theirs");
    let o = s.as_user(
        Path::new("/usr/bin/umoci"),
        &[
            "unpack",
            "--rootless",
            "--image",
            &img,
            theirs.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "umoci: {}", text(&o.stderr));
    // Read as root: some directories are 0000 and 0644.
    let (a, b) = (tree(&ours.join("rootfs")), tree(&theirs.join("rootfs")));
    let (xa, xb) = (xattrs(&ours.join("rootfs")), xattrs(&theirs.join("rootfs")));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).chain(xa.keys()).collect();
    type Diff<'a> = (
        &'a str,
        Option<&'a String>,
        Option<&'a String>,
        Option<&'a String>,
        Option<&'a String>,
    );
    let mut diffs: Vec<Diff> = Vec::new();
    for k in keys {
        if a.get(k) != b.get(k) || xa.get(k) != xb.get(k) {
            diffs.push((k.as_str(), a.get(k), b.get(k), xa.get(k), xb.get(k)));
        }
    }
    // Two differences. umoci puts an empty file where a device node was
    // (with the device's owner record; a hard link to it links that file);
    // ocirun makes nothing. umoci 0.4.7
    // cannot set the owner record of a file without u+w (EACCES, which it
    // warns about as a harmless EPERM); ocirun sets it before the mode.
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let expected = |(k, ours, theirs, xours, xtheirs): &Diff| match *k {
        "c" | "loop0" | "loop0-link" => {
            ours.is_none()
                && xours.is_none()
                && theirs.is_some_and(|t| t.starts_with('f') && t.contains(empty))
        }
        "ro/b" | "hardro" | "ro/c2" => {
            ours == theirs
                && xtheirs.is_none()
                && xours.is_some_and(|x| x.starts_with("user.rootlesscontainers=0x08"))
        }
        _ => false,
    };
    let names: Vec<&str> = diffs.iter().map(|d| d.0).collect();
    assert!(
        names == ["c", "hardro", "loop0", "loop0-link", "ro/b", "ro/c2"]
            && diffs.iter().all(expected),
        "trees differ:\n{diffs:#?}"
    );
}

#[test]
fn bad_input_is_one_line_and_leaves_nothing() {
    let (uid, gid) = user();
    let s = Scratch::new("bad");
    let good = image(s.dir(), true);
    let check = |what: &str, o: &Output, want: &str| {
        let err = text(&o.stderr);
        assert!(!o.status.success(), "{what}: succeeded");
        assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
        assert!(
            err.starts_with("ocirun: error: ") && err.contains(want),
            "{what}: {err}"
        );
        assert!(s.left().is_empty(), "{what}: left {:?}", s.left());
    };
    // A destination the user cannot write.
    let root_only = s.dir().join("root-only");
    fs::create_dir(&root_only).unwrap();
    let o = s.unpack(&good, &root_only.join("b"), &[]);
    check("unwritable parent", &o, "create bundle");
    assert_eq!(fs::read_dir(&root_only).unwrap().count(), 0);
    let o = s.unpack(&good, &root_only.join("x/b"), &[]);
    check("uncreatable parent", &o, "EACCES");
    // An image the user cannot read: the layout, or one layer blob.
    let private = s.dir().join("private");
    fs::create_dir(&private).unwrap();
    let img = image(&private, true);
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    let o = s.unpack(&img, &s.out().join("b"), &[]);
    check("unreadable layout", &o, "EACCES");
    fs::set_permissions(&private, fs::Permissions::from_mode(0o755)).unwrap();
    let l = private.join("layout");
    let layer = first_manifest(&l)["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    fs::set_permissions(blob_path(&l, &layer), fs::Permissions::from_mode(0o600)).unwrap();
    let o = s.unpack(&img, &s.out().join("b"), &[]);
    check("unreadable layer", &o, &layer);
    // A bad second layer, after a first with 0555 and 0000 directories.
    let bad = s.dir().join("corrupt");
    fs::create_dir(&bad).unwrap();
    let mut layers = layers_owners();
    layers[1].1.truncate(1000);
    let l = layout(&bad, &layers, json!({}), &[]);
    let o = s.unpack(&format!("{}:amd64", l.display()), &s.out().join("b"), &[]);
    check("truncated layer", &o, "layer 2");
    // With privilege asked for, chown fails: the error, nothing left.
    let o = s.unpack(&good, &s.out().join("b"), &["--rootless", "false"]);
    check("--rootless false", &o, "chown");
    // What a killed unpack left (its pid gone, read-only directories in
    // it) is removed by the next unpack of the same bundle.
    let stale = s.out().join(".b.unpack-4194304");
    fs::create_dir_all(stale.join("rootfs/ro/sub")).unwrap();
    for p in ["", "rootfs", "rootfs/ro", "rootfs/ro/sub"] {
        nix::unistd::chown(
            &stale.join(p),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .unwrap();
    }
    fs::set_permissions(
        stale.join("rootfs/ro/sub"),
        fs::Permissions::from_mode(0o555),
    )
    .unwrap();
    fs::set_permissions(stale.join("rootfs/ro"), fs::Permissions::from_mode(0o000)).unwrap();
    s.unpack_ok(&good, &s.out().join("b"));
    assert_eq!(s.left(), ["b"]);
}

#[test]
fn busybox_bundle_runs_rootless_as_unpacked() {
    let s = Scratch::new("busybox");
    let img = busybox_image(s.dir());
    let b = s.out().join("bundle");
    let warn = s.unpack_ok(&format!("{}:latest", img.display()), &b);
    // The image's user is not mapped in a rootless bundle: said, and root.
    assert!(
        warn.contains("image user \"user\"") && warn.contains("runs as 0:0"),
        "{warn}"
    );
    let state = s.out().join("state");
    let o = s.as_user(
        &s.bin,
        &[
            "--root",
            state.to_str().unwrap(),
            "run",
            "--bundle",
            b.to_str().unwrap(),
            "bbrootless",
        ],
    );
    assert!(o.status.success(), "run: {}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "Hello from an OCI image, unpacked and run by ocirun (root in /home/user)\n"
    );
    assert!(!state.join("bbrootless").exists(), "state left");
}

/// `--rootless true` as root: no chown either, the same owner records.
#[test]
fn rootless_asked_for_by_root() {
    let t = tmp("root-rootless");
    let img = image(&t.0, true);
    let b = t.0.join("bundle");
    let o = Command::new(bin())
        .args(["--rootless", "true", "unpack", "--image", &img])
        .arg(&b)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let r = b.join("rootfs");
    let m = fs::metadata(r.join("etc/u1000")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0));
    assert_eq!(
        xattr(&r.join("etc/u1000"), "user.rootlesscontainers").map(|v| hex(&v)),
        Some("08e80710e807".into())
    );
    assert!(!r.join("loop0").exists());
}
