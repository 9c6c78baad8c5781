//! `ocirun unpack` on image layouts built here in code: layer semantics,
//! whiteouts, hostile tars, digests, platforms, and a cross-check with umoci.

mod common;

use common::layers::{
    Comp, E, blob_path, first_manifest, header, hexd, json_at, layers_semantics, layout, tar_of,
    tree, xattr,
};
use common::{bin, busybox_image, tmp};

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

fn unpack(image: &str, bundle: &Path, extra: &[&str]) -> Output {
    Command::new(bin())
        .arg("unpack")
        .args(extra)
        .arg("--image")
        .arg(image)
        .arg(bundle)
        .output()
        .unwrap()
}

fn unpack_ok(image: &str, bundle: &Path) {
    let o = unpack(image, bundle, &[]);
    assert!(
        o.status.success(),
        "unpack failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn layers_whiteouts_links_and_metadata() {
    let t = tmp("semantics");
    let l = layout(
        &t.0,
        &layers_semantics(),
        json!({"config": {"Cmd": ["sh"]}}),
        &[],
    );
    let b = t.0.join("bundle");
    unpack_ok(l.to_str().unwrap(), &b);
    let r = b.join("rootfs");
    let tr = tree(&r);
    let get = |p: &str| tr.get(p).cloned().unwrap_or_else(|| "MISSING".into());
    // Deleted dir recreated with only the new content and its own mode.
    assert!(get("d").starts_with("d 700 "), "{}", get("d"));
    assert!(tr.contains_key("d/new"));
    assert!(
        !tr.contains_key("d/x") && !tr.contains_key("d/sub"),
        "{tr:#?}"
    );
    // File whiteout.
    assert!(!tr.contains_key("a/keep"));
    assert!(
        !tr.contains_key(".wh.d") && !tr.keys().any(|k| k.contains(".wh.")),
        "{tr:#?}"
    );
    // Opaque dir: lower entries gone, this layer's kept whatever their order.
    assert!(
        tr.contains_key("o/before") && tr.contains_key("o/after"),
        "{tr:#?}"
    );
    assert!(
        !tr.contains_key("o/lower1") && !tr.contains_key("o/sub"),
        "{tr:#?}"
    );
    // Hardlinks within and across layers.
    // a/h1 outlived a/b/f1 (a/b became a symlink in layer 3): same content.
    assert_eq!(std::fs::read_to_string(r.join("a/h1")).unwrap(), "one");
    assert_eq!(
        std::fs::metadata(r.join("bin/su2")).unwrap().ino(),
        std::fs::metadata(r.join("bin/su")).unwrap().ino()
    );
    // Modes incl. setuid and sticky, owners, special files.
    assert!(get("bin/su").starts_with("f 4755 0:0"), "{}", get("bin/su"));
    assert!(
        get("bin/owned").starts_with("f 640 1000:1001"),
        "{}",
        get("bin/owned")
    );
    assert!(get("tmp").starts_with("d 1777"), "{}", get("tmp"));
    assert!(get("p").starts_with("p 600"), "{}", get("p"));
    assert!(
        get("c").starts_with("c 666") && get("c").contains(&format!("dev={}", libc::makedev(1, 3))),
        "{}",
        get("c")
    );
    // Symlink swaps.
    assert_eq!(get("a/b"), "l 0 0:0 -> /etc");
    assert!(get("s").starts_with("d 755"), "{}", get("s"));
    assert!(tr.contains_key("s/inside"));
    assert!(!tr.contains_key("gone-later"));
    // Long names (GNU/PAX) and xattrs, security.capability included.
    assert!(tr.keys().any(|k| k.len() > 150), "no long name in {tr:#?}");
    assert_eq!(
        xattr(&r.join("a/xf"), "user.note").as_deref(),
        Some(&b"hello"[..])
    );
    assert!(xattr(&r.join("bin/ping"), "security.capability").is_some());
    // Directory mtimes set after their children.
    assert_eq!(
        std::fs::metadata(r.join("lngdir")).unwrap().mtime(),
        1_000_000
    );
    // config.json is there and parses.
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["process"]["args"], json!(["sh"]));
}

/// Directory modes and mtimes come from the last layer with an entry for
/// the directory, applied once every layer is in; a directory removed and
/// made again as a parent keeps nothing of the removed one.
#[test]
fn directory_metadata_from_the_last_entry_across_layers() {
    let t = tmp("dirmeta");
    let l1 = tar_of(&[
        E::Dir("ro/", 0o555),
        E::File("ro/a", "a", 0o444),
        E::Dir("gone/", 0o500),
        E::Dir("gone/sub/", 0o555),
        E::Dir("again/", 0o700),
    ]);
    let l2 = tar_of(&[
        E::File("ro/.wh.a", "", 0o644),
        E::File("ro/b", "b", 0o644),
        E::File(".wh.gone", "", 0o644),
        E::File("gone/sub/f", "f", 0o644),
    ]);
    let mut h = header(tar::EntryType::Directory, 0o751);
    h.set_mtime(2_000_000);
    let mut b3 = tar::Builder::new(Vec::new());
    b3.append_data(&mut h, "again/", &[][..]).unwrap();
    let l3 = b3.into_inner().unwrap();
    let l = layout(
        &t.0,
        &[(Comp::Plain, l1), (Comp::Plain, l2), (Comp::Plain, l3)],
        json!({}),
        &[],
    );
    let b = t.0.join("bundle");
    unpack_ok(l.to_str().unwrap(), &b);
    let r = b.join("rootfs");
    let tr = tree(&r);
    let meta = |p: &str| std::fs::symlink_metadata(r.join(p)).unwrap();
    assert!(tr["ro"].starts_with("d 555 "), "{}", tr["ro"]);
    assert!(
        tr.contains_key("ro/b") && !tr.contains_key("ro/a"),
        "{tr:#?}"
    );
    // ro was changed by layer 2 but has no entry there: layer 1's mtime.
    assert_eq!(meta("ro").mtime(), 1_000_000);
    assert!(tr["gone"].starts_with("d 755 "), "{}", tr["gone"]);
    assert!(tr["gone/sub"].starts_with("d 755 "), "{}", tr["gone/sub"]);
    assert!(tr["again"].starts_with("d 751 "), "{}", tr["again"]);
    assert_eq!(meta("again").mtime(), 2_000_000);
}

#[test]
fn same_tree_as_umoci() {
    if Command::new("umoci").arg("--version").output().is_err() {
        panic!("umoci is not installed: scripts/setup installs it");
    }
    let t = tmp("umoci");
    // Debian's umoci 0.4 reads gzip layers only: same layers, all gzip.
    let layers: Vec<_> = layers_semantics()
        .into_iter()
        .map(|(_, t)| (Comp::Gzip, t))
        .collect();
    let l = layout(&t.0, &layers, json!({"config": {"Cmd": ["sh"]}}), &[]);
    let ours = t.0.join("ours");
    unpack_ok(&format!("{}:amd64", l.display()), &ours);
    let theirs = t.0.join("theirs");
    let o = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:amd64", l.display()))
        .arg(&theirs)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let a = tree(&ours.join("rootfs"));
    let b = tree(&theirs.join("rootfs"));
    let diffs: Vec<String> = a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: ours {:?} umoci {:?}", a.get(k), b.get(k)))
        .collect();
    assert!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));
}

#[test]
fn hostile_layers_never_write_outside_the_rootfs() {
    let t = tmp("hostile");
    let outside = t.0.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let host_target = outside.join("target");
    // (name, layers, must fail). The others may fail with a clear error or be
    // contained inside the rootfs; either way nothing outside is touched.
    let cases: Vec<(&str, Vec<Vec<u8>>, bool)> = vec![
        (
            "dotdot",
            vec![tar_of(&[E::Raw("../../outside/pwned", "x")])],
            true,
        ),
        (
            "dotdot-middle",
            vec![tar_of(&[E::Raw("a/../../outside/pwned", "x")])],
            true,
        ),
        (
            "absolute",
            vec![tar_of(&[E::Raw("/outside/pwned", "x")])],
            false,
        ),
        (
            "symlink-then-file",
            vec![tar_of(&[
                E::Link("evil", "../../outside"),
                E::File("evil/pwned", "x", 0o644),
            ])],
            false,
        ),
        (
            "symlink-abs-then-file",
            vec![tar_of(&[
                E::Link("evil", "/"),
                E::Raw("evil/outside/pwned", "x"),
            ])],
            false,
        ),
        (
            "symlink-lower-layer",
            vec![
                tar_of(&[E::Link("up", "../../../../../../outside")]),
                tar_of(&[E::File("up/pwned", "x", 0o644)]),
            ],
            false,
        ),
        (
            "hardlink-out",
            vec![tar_of(&[E::RawHard("h", "../../outside/target")])],
            true,
        ),
        (
            "hardlink-through-symlink",
            vec![tar_of(&[
                E::Link("l", "../../outside/target"),
                E::Hard("h", "l"),
                E::File("h", "overwrite", 0o644),
            ])],
            false,
        ),
        (
            "file-over-symlinked-dir",
            vec![
                tar_of(&[E::Link("etc", "../../outside")]),
                tar_of(&[E::Dir("etc/", 0o755), E::File("etc/pwned", "x", 0o644)]),
            ],
            false,
        ),
        (
            // The directory's mode is applied after the layer: to the
            // directory, never through the symlink that replaced it.
            "dir-then-symlink-same-layer",
            vec![tar_of(&[
                E::Dir("x/", 0o777),
                E::Link("x", host_target.to_str().unwrap()),
            ])],
            false,
        ),
    ];
    std::fs::write(outside.join("target"), "host file").unwrap();
    std::fs::set_permissions(
        outside.join("target"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    for (name, layers, must_fail) in cases {
        let d = t.0.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let l = layout(
            &d,
            &layers
                .into_iter()
                .map(|x| (Comp::Plain, x))
                .collect::<Vec<_>>(),
            json!({}),
            &[],
        );
        let b = d.join("bundle");
        let o = unpack(l.to_str().unwrap(), &b, &[]);
        assert_eq!(
            std::fs::read_to_string(outside.join("target")).unwrap(),
            "host file",
            "{name}: host file changed"
        );
        assert_eq!(
            std::fs::metadata(&host_target).unwrap().mode() & 0o7777,
            0o600,
            "{name}: host file's mode changed"
        );
        let left: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 1, "{name}: wrote outside the rootfs: {left:?}");
        if must_fail {
            assert!(!o.status.success(), "{name}: accepted");
            assert!(!b.exists(), "{name}: half-made bundle left");
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(err.trim().lines().count(), 1, "{name}: {err}");
        } else if !o.status.success() {
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(err.trim().lines().count(), 1, "{name}: {err}");
            assert!(!b.exists(), "{name}: half-made bundle left");
        }
        let strays: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".unpack-"))
            .collect();
        assert!(strays.is_empty(), "{name}: temporary dirs left: {strays:?}");
    }
}

#[test]
fn digest_and_diff_id_mismatches_leave_nothing() {
    let t = tmp("digest");
    let l = layout(
        &t.0,
        &[(Comp::Gzip, tar_of(&[E::File("f", "content", 0o644)]))],
        json!({}),
        &[],
    );
    // Tamper with the layer blob (keep its size).
    let m = first_manifest(&l);
    let p = blob_path(&l, m["layers"][0]["digest"].as_str().unwrap());
    let mut data = std::fs::read(&p).unwrap();
    let n = data.len();
    data[n - 5] ^= 0xff;
    std::fs::write(&p, &data).unwrap();
    let b = t.0.join("bundle");
    let o = unpack(l.to_str().unwrap(), &b, &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("mismatch") || err.contains("corrupt") || err.contains("invalid"),
        "{err}"
    );
    assert!(!b.exists());
    assert_eq!(
        std::fs::read_dir(&t.0).unwrap().count(),
        1,
        "left: {:?}",
        std::fs::read_dir(&t.0)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect::<Vec<_>>()
    );

    // A wrong diff_id: the blob is fine, the uncompressed content is not what the config says.
    let t2 = tmp("diffid");
    let l = layout(
        &t2.0,
        &[(Comp::Zstd, tar_of(&[E::File("f", "content", 0o644)]))],
        json!({}),
        &[],
    );
    let mut m = first_manifest(&l);
    let mut cfg = json_at(&blob_path(&l, m["config"]["digest"].as_str().unwrap()));
    cfg["rootfs"]["diff_ids"][0] = json!(format!("sha256:{}", "0".repeat(64)));
    let cb = serde_json::to_vec(&cfg).unwrap();
    let ncd = hexd(&cb);
    std::fs::write(l.join("blobs/sha256").join(&ncd), &cb).unwrap();
    m["config"]["digest"] = json!(format!("sha256:{ncd}"));
    m["config"]["size"] = json!(cb.len());
    let mb = serde_json::to_vec(&m).unwrap();
    let nmd = hexd(&mb);
    std::fs::write(l.join("blobs/sha256").join(&nmd), &mb).unwrap();
    let idx = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{nmd}"), "size": mb.len()}]});
    std::fs::write(l.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    let b = t2.0.join("bundle");
    let o = unpack(l.to_str().unwrap(), &b, &[]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("diff_id mismatch"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!b.exists());
}

#[test]
fn platforms_and_references() {
    let t = tmp("platforms");
    let l = layout(
        &t.0,
        &[(Comp::Gzip, tar_of(&[E::File("f", "x", 0o644)]))],
        json!({}),
        &[("linux", "amd64"), ("linux", "arm64"), ("linux", "s390x")],
    );
    let ls = l.to_str().unwrap();
    // Host platform by default (these machines are amd64).
    let o = Command::new(bin())
        .args(["image", "inspect", ls])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["config"]["architecture"], "amd64");
    let o = Command::new(bin())
        .args(["image", "inspect", ls, "--platform", "linux/arm64"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["config"]["architecture"], "arm64");
    assert_eq!(v["layers"].as_array().unwrap().len(), 1);
    // No match: the error lists what is there.
    let b = t.0.join("b1");
    let o = unpack(ls, &b, &["--platform", "linux/riscv64"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("linux/amd64") && err.contains("linux/s390x"),
        "{err}"
    );
    assert!(!b.exists());
    // A tag and a digest as REF.
    unpack_ok(&format!("{ls}:arm64"), &t.0.join("b2"));
    let idx = json_at(&l.join("index.json"));
    let dg = idx["manifests"][2]["digest"].as_str().unwrap();
    let o = Command::new(bin())
        .args([
            "image",
            "inspect",
            &format!("{ls}:{dg}"),
            "--platform",
            "linux/s390x",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = unpack(&format!("{ls}:nope"), &t.0.join("b3"), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("amd64, arm64, s390x"),
        "{err}"
    );
}

#[test]
fn config_json_from_the_image_config() {
    let t = tmp("config");
    let l1 = tar_of(&[
        E::Dir("etc/", 0o755),
        E::File(
            "etc/passwd",
            "root:x:0:0::/root:/bin/sh\nweb:x:33:33::/var/www:/bin/false\n",
            0o644,
        ),
        E::File("etc/group", "root:x:0:\nwww:x:33:\nextra:x:44:web\n", 0o644),
    ]);
    let cfg = json!({"author": "someone", "config": {
        "User": "web", "Env": ["A=1"], "Entrypoint": ["/bin/app", "--flag"], "Cmd": ["arg"],
        "WorkingDir": "/srv", "Labels": {"com.example.l": "v"}, "StopSignal": "SIGQUIT",
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "Volumes": {"/data": {}}}});
    let l = layout(&t.0, &[(Comp::Gzip, l1)], cfg, &[]);
    let b = t.0.join("bundle");
    unpack_ok(l.to_str().unwrap(), &b);
    let c: Value = serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    let p = &c["process"];
    assert_eq!(p["args"], json!(["/bin/app", "--flag", "arg"]));
    assert_eq!(p["cwd"], "/srv");
    assert_eq!(p["terminal"], false);
    assert_eq!(
        p["user"],
        json!({"uid": 33, "gid": 33, "additionalGids": [44]})
    );
    let env = p["env"].as_array().unwrap();
    assert!(
        env.contains(&json!("A=1")) && env.iter().any(|e| e.as_str().unwrap().starts_with("PATH="))
    );
    let a = &c["annotations"];
    assert_eq!(a["com.example.l"], "v");
    assert_eq!(a["org.opencontainers.image.stopSignal"], "SIGQUIT");
    assert_eq!(a["org.opencontainers.image.exposedPorts"], "53/udp,80/tcp");
    assert_eq!(a["org.opencontainers.image.volumes"], "/data");
    assert_eq!(a["org.opencontainers.image.author"], "someone");
    assert_eq!(a["org.opencontainers.image.architecture"], "amd64");
}

#[test]
fn busybox_image_unpacks_and_runs() {
    let t = tmp("busybox");
    let img = busybox_image(&t.0);
    let b = t.0.join("bundle");
    unpack_ok(&format!("{}:latest", img.display()), &b);
    let o = Command::new(bin())
        .arg("--root")
        .arg(t.0.join("state"))
        .args(["run", "--bundle"])
        .arg(&b)
        .arg("bbimg")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "Hello from an OCI image, unpacked and run by ocirun (user in /home/user)\n"
    );
}

fn put_blob(l: &Path, data: &[u8]) -> Value {
    let d = hexd(data);
    std::fs::create_dir_all(l.join("blobs/sha256")).unwrap();
    std::fs::write(l.join("blobs/sha256").join(&d), data).unwrap();
    json!({"digest": format!("sha256:{d}"), "size": data.len()})
}

#[test]
fn docker_v2_2_manifest_list_and_media_types() {
    let t = tmp("docker");
    let l = t.0.join("layout");
    let tar = tar_of(&[E::File("hello", "from a docker image", 0o644)]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let mut layer = put_blob(&l, &gz.finish().unwrap());
    layer["mediaType"] = json!("application/vnd.docker.image.rootfs.diff.tar.gzip");
    let cfg = json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", hexd(&tar))]}});
    let mut cd = put_blob(&l, &serde_json::to_vec(&cfg).unwrap());
    cd["mediaType"] = json!("application/vnd.docker.container.image.v1+json");
    let man = json!({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "config": cd, "layers": [layer]});
    let mut md = put_blob(&l, &serde_json::to_vec(&man).unwrap());
    md["mediaType"] = json!("application/vnd.docker.distribution.manifest.v2+json");
    md["platform"] = json!({"architecture": "amd64", "os": "linux"});
    let list = json!({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json", "manifests": [md]});
    let mut ld = put_blob(&l, &serde_json::to_vec(&list).unwrap());
    ld["mediaType"] = json!("application/vnd.docker.distribution.manifest.list.v2+json");
    ld["annotations"] = json!({"org.opencontainers.image.ref.name": "v1"});
    std::fs::write(l.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        l.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [ld]})).unwrap(),
    )
    .unwrap();
    let b = t.0.join("bundle");
    unpack_ok(&format!("{}:v1", l.display()), &b);
    assert_eq!(
        std::fs::read_to_string(b.join("rootfs/hello")).unwrap(),
        "from a docker image"
    );
}

#[test]
fn unsupported_layer_media_type_and_missing_blob_are_clear_errors() {
    let t = tmp("mediatype");
    let l = layout(
        &t.0,
        &[(Comp::Plain, tar_of(&[E::File("f", "x", 0o644)]))],
        json!({}),
        &[],
    );
    // Rewrite the manifest's layer media type to something we do not read.
    let mut m = first_manifest(&l);
    m["layers"][0]["mediaType"] = json!("application/vnd.oci.image.layer.v1.tar+bzip2");
    let mut nd = put_blob(&l, &serde_json::to_vec(&m).unwrap());
    nd["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json");
    std::fs::write(
        l.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [nd]})).unwrap(),
    )
    .unwrap();
    let b = t.0.join("bundle");
    let o = unpack(l.to_str().unwrap(), &b, &[]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("tar+bzip2"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!b.exists());
    // A missing (e.g. non-distributable) blob: named in the error.
    let t2 = tmp("missing");
    let l2 = layout(
        &t2.0,
        &[(Comp::Gzip, tar_of(&[E::File("f", "x", 0o644)]))],
        json!({}),
        &[],
    );
    let m = first_manifest(&l2);
    let ld = m["layers"][0]["digest"].as_str().unwrap().to_string();
    std::fs::remove_file(blob_path(&l2, &ld)).unwrap();
    let o = unpack(l2.to_str().unwrap(), &t2.0.join("bundle"), &[]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&ld),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A layer of many small files: an unpack that takes long enough to be
/// interrupted.
fn slow_layout(dir: &Path) -> PathBuf {
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..30_000 {
        let mut h = header(tar::EntryType::Regular, 0o644);
        h.set_size(1);
        b.append_data(&mut h, format!("d{}/f{i}", i % 100), &b"x"[..])
            .unwrap();
    }
    layout(
        dir,
        &[(Comp::Gzip, b.into_inner().unwrap())],
        json!({}),
        &[],
    )
}

fn staging_dirs(parent: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".unpack-"))
        .map(|e| e.path())
        .collect()
}

/// Starts an unpack and returns once its staging dir exists.
fn unpack_in_flight(image: &str, bundle: &Path) -> std::process::Child {
    let child = Command::new(bin())
        .args(["unpack", "--image", image])
        .arg(bundle)
        .spawn()
        .unwrap();
    let parent = bundle.parent().unwrap();
    let t0 = std::time::Instant::now();
    while staging_dirs(parent).is_empty() {
        assert!(t0.elapsed().as_secs() < 20, "no staging dir appeared");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child
}

#[test]
fn interrupted_unpacks_leave_no_staging_dir() {
    let t = tmp("unpack-interrupted");
    let l = slow_layout(&t.0);
    let image = format!("{}:amd64", l.display());
    let out = t.0.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let bundle = out.join("bundle");
    // SIGTERM (and SIGINT): the unpack removes what it made and ends 128+N.
    for (sig, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let mut child = unpack_in_flight(&image, &bundle);
        send_signal(child.id(), sig);
        let st = child.wait().unwrap();
        assert_eq!(st.code(), Some(code), "{st:?}");
        assert!(staging_dirs(&out).is_empty(), "{:?}", staging_dirs(&out));
        assert!(!bundle.exists());
    }
    // SIGKILL leaves it; the next unpack of that bundle removes it.
    let mut child = unpack_in_flight(&image, &bundle);
    send_signal(child.id(), libc::SIGKILL);
    child.wait().unwrap();
    assert_eq!(staging_dirs(&out).len(), 1);
    unpack_ok(&image, &bundle);
    assert!(staging_dirs(&out).is_empty(), "{:?}", staging_dirs(&out));
    assert!(bundle.join("rootfs/d7/f7").exists());
}

fn send_signal(pid: u32, sig: i32) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success());
}
