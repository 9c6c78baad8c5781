//! Mount options, checked from inside the container: the recursive
//! attributes (`rro`, `rnosuid`, `rnoatime`, ...) on the submounts of a bind
//! mount, `nosymfollow`, idmapped mounts and `rootfsPropagation`.

use std::fs;
use std::os::unix::fs::{chown, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use runtime_tests::*;
use serde_json::{Value, json};

/// A host directory `src` in the bundle with a tmpfs mounted on `src/sub`,
/// each holding a file and a relative symlink to it. Declared after the
/// container so that it is unmounted before the bundle is removed.
struct SourceTree {
    dir: PathBuf,
}

impl SourceTree {
    /// `sub_opts` are flags given to the submount once its files are written.
    fn new(c: &Ctr, sub_opts: &[&str]) -> SourceTree {
        let dir = c.bundle().join("src");
        let sub = dir.join("sub");
        fs::create_dir_all(&sub).unwrap();
        fs::write(dir.join("file.txt"), "top\n").unwrap();
        symlink("file.txt", dir.join("link")).unwrap();
        // In rootless mode the container's root is rtuser: its tmpfs.
        let owner = if runtime_tests::rootless() {
            let (uid, gid) = runtime_tests::test_user();
            format!(",uid={uid},gid={gid}")
        } else {
            String::new()
        };
        mount(
            &["-t", "tmpfs", "-o", &format!("mode=755{owner}"), "tmpfs"],
            &sub,
        );
        let t = SourceTree { dir };
        fs::write(sub.join("file.txt"), "sub\n").unwrap();
        symlink("file.txt", sub.join("link")).unwrap();
        if !sub_opts.is_empty() {
            // Flags of the mount (not of the tmpfs superblock), which the
            // recursive options change.
            mount(
                &["-o", &format!("remount,bind,{}", sub_opts.join(","))],
                &sub,
            );
        }
        t
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for SourceTree {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.join("sub"))
            .status();
    }
}

fn mount(args: &[&str], on: &Path) {
    let st = Command::new("mount").args(args).arg(on).status().unwrap();
    assert!(st.success(), "mount {args:?} {}", on.display());
}

fn add_mount(c: &mut Ctr, m: Value) {
    c.config["mounts"].as_array_mut().unwrap().push(m);
}

fn add_bind(c: &mut Ctr, dest: &str, src: &Path, options: &[&str]) {
    add_mount(
        c,
        json!({"destination": dest, "type": "bind", "source": src, "options": options}),
    );
}

/// The options /proc/self/mounts shows for the mount point `mp`, from the
/// container's output (the last mount there wins).
fn options_of(out: &str, mp: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() >= 4 && f[1] == mp).then(|| f[3].split(',').map(String::from).collect())
        })
        .next_back()
        .unwrap_or_else(|| panic!("{mp} is not in the container's mounts:\n{out}"))
}

fn has(opts: &[String], word: &str) -> bool {
    opts.iter().any(|o| o == word)
}

const SHOW: &str = "cat /proc/self/mounts; echo ---";

#[test]
fn rro_makes_every_submount_read_only() {
    let mut c = Ctr::new(
        "rro",
        &[
            "sh",
            "-c",
            &format!("{SHOW}; touch /mnt/new 2>&1; touch /mnt/sub/new 2>&1; echo done"),
        ],
    );
    let t = SourceTree::new(&c, &[]);
    add_bind(&mut c, "/mnt", t.path(), &["rbind", "rro"]);
    let out = c.run_ok();
    assert!(has(&options_of(&out, "/mnt"), "ro"), "{out}");
    assert!(has(&options_of(&out, "/mnt/sub"), "ro"), "{out}");
    let after = out.split("---").nth(1).unwrap();
    assert_eq!(after.matches("Read-only file system").count(), 2, "{out}");
    assert!(!t.path().join("sub/new").exists());
}

#[test]
fn plain_ro_leaves_submounts_writable() {
    let mut c = Ctr::new(
        "ro",
        &[
            "sh",
            "-c",
            &format!("{SHOW}; touch /mnt/sub/new && echo wrote"),
        ],
    );
    let t = SourceTree::new(&c, &[]);
    add_bind(&mut c, "/mnt", t.path(), &["rbind", "ro"]);
    let out = c.run_ok();
    assert!(has(&options_of(&out, "/mnt"), "ro"), "{out}");
    assert!(has(&options_of(&out, "/mnt/sub"), "rw"), "{out}");
    assert!(out.contains("wrote"), "{out}");
}

#[test]
fn rrw_makes_a_read_only_submount_writable() {
    if runtime_tests::skip_rootless(
        "the flags of mounts made outside are locked in a user namespace (the kernel refuses to change them)",
    ) {
        return;
    }
    let mut c = Ctr::new(
        "rrw",
        &[
            "sh",
            "-c",
            &format!("{SHOW}; touch /mnt/sub/new && echo wrote"),
        ],
    );
    let t = SourceTree::new(&c, &["ro"]);
    add_bind(&mut c, "/mnt", t.path(), &["rbind", "rrw"]);
    let out = c.run_ok();
    assert!(has(&options_of(&out, "/mnt/sub"), "rw"), "{out}");
    assert!(out.contains("wrote"), "{out}");
}

#[test]
fn rnosuid_rnodev_rnoexec_reach_submounts() {
    let mut c = Ctr::new("rnosuid", &["sh", "-c", SHOW]);
    let t = SourceTree::new(&c, &[]);
    add_bind(
        &mut c,
        "/mnt",
        t.path(),
        &["rbind", "rnosuid", "rnodev", "rnoexec"],
    );
    let out = c.run_ok();
    for mp in ["/mnt", "/mnt/sub"] {
        let o = options_of(&out, mp);
        for w in ["nosuid", "nodev", "noexec"] {
            assert!(has(&o, w), "{mp} lacks {w}: {o:?}");
        }
    }
}

#[test]
fn rsuid_clears_nosuid_on_submounts() {
    if runtime_tests::skip_rootless(
        "the flags of mounts made outside are locked in a user namespace (the kernel refuses to change them)",
    ) {
        return;
    }
    let mut c = Ctr::new("rsuid", &["sh", "-c", SHOW]);
    let t = SourceTree::new(&c, &["nosuid", "noexec"]);
    add_bind(&mut c, "/mnt", t.path(), &["rbind", "rsuid"]);
    let out = c.run_ok();
    let o = options_of(&out, "/mnt/sub");
    assert!(!has(&o, "nosuid"), "{o:?}");
    assert!(has(&o, "noexec"), "only rsuid was asked for: {o:?}");
}

#[test]
fn recursive_access_time_options() {
    if runtime_tests::skip_rootless(
        "the flags of mounts made outside are locked in a user namespace (the kernel refuses to change them)",
    ) {
        return;
    }
    let mut c = Ctr::new("ratime", &["sh", "-c", SHOW]);
    let t = SourceTree::new(&c, &[]);
    add_bind(
        &mut c,
        "/a",
        t.path(),
        &["rbind", "rnoatime", "rnodiratime"],
    );
    add_bind(&mut c, "/b", t.path(), &["rbind", "rstrictatime"]);
    add_bind(&mut c, "/c", t.path(), &["rbind", "rnoatime", "rrelatime"]);
    let out = c.run_ok();
    let a = options_of(&out, "/a/sub");
    assert!(has(&a, "noatime") && has(&a, "nodiratime"), "{a:?}");
    // strictatime shows as neither relatime nor noatime.
    let b = options_of(&out, "/b/sub");
    assert!(!has(&b, "relatime") && !has(&b, "noatime"), "{b:?}");
    let c2 = options_of(&out, "/c/sub");
    assert!(has(&c2, "relatime") && !has(&c2, "noatime"), "{c2:?}");
}

/// What following a symlink under a nosymfollow mount gives: ELOOP, in
/// glibc's or musl's words.
fn refused_symlink(out: &str) -> bool {
    out.contains("Too many levels of symbolic links") || out.contains("Symbolic link loop")
}

#[test]
fn rnosymfollow_stops_symlinks_in_submounts() {
    let mut c = Ctr::new(
        "rnosymfollow",
        &[
            "sh",
            "-c",
            "cat /mnt/sub/file.txt; readlink /mnt/sub/link; cat /mnt/sub/link; cat /mnt/link",
        ],
    );
    let t = SourceTree::new(&c, &[]);
    add_bind(&mut c, "/mnt", t.path(), &["rbind", "rnosymfollow"]);
    let o = c.run();
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(out.starts_with("sub\nfile.txt\n"), "{out}");
    assert_eq!(
        out.matches("sub\n").count(),
        1,
        "a symlink was followed: {out}"
    );
    assert!(!out.contains("top"), "a symlink was followed: {out}");
    assert!(refused_symlink(&out), "{out}");
}

#[test]
fn nosymfollow_on_a_bind_mount_takes_effect() {
    let mut c = Ctr::new(
        "nosymfollow",
        &[
            "sh",
            "-c",
            &format!("{SHOW}; cat /mnt/file.txt; cat /mnt/link; cat /mnt/sub/link"),
        ],
    );
    let t = SourceTree::new(&c, &[]);
    add_bind(&mut c, "/mnt", t.path(), &["rbind", "nosymfollow"]);
    let o = c.run();
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(has(&options_of(&out, "/mnt"), "nosymfollow"), "{out}");
    // Not recursive: the submount still follows its links.
    assert!(!has(&options_of(&out, "/mnt/sub"), "nosymfollow"), "{out}");
    let after = out.split("---").nth(1).unwrap();
    assert_eq!(after.matches("top\n").count(), 1, "{out}");
    assert!(after.contains("sub\n"), "{out}");
    assert!(refused_symlink(after), "{out}");
}

#[test]
fn nosymfollow_on_a_new_filesystem() {
    let mut c = Ctr::new(
        "nosymfollow-tmpfs",
        &[
            "sh",
            "-c",
            &format!("{SHOW}; echo x > /mnt/f; ln -s f /mnt/l; cat /mnt/l"),
        ],
    );
    add_mount(
        &mut c,
        json!({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs", "options": ["nosymfollow", "mode=755"]}),
    );
    let o = c.run();
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(has(&options_of(&out, "/mnt"), "nosymfollow"), "{out}");
    assert!(refused_symlink(&out), "{out}");
}

#[test]
fn rootfs_propagation_unbindable() {
    let mut c = Ctr::new("unbindable", &["cat", "/proc/self/mountinfo"]);
    c.config["linux"]["rootfsPropagation"] = json!("unbindable");
    let out = c.run_ok();
    let root = out
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap_or_else(|| panic!("no / in mountinfo:\n{out}"));
    let optional: Vec<&str> = root.split(' ').skip(6).take_while(|f| *f != "-").collect();
    assert_eq!(optional, ["unbindable"], "{root}");
}

/// Idmapped mounts came with runc 1.2; older runtimes ignore the fields.
fn skip_without_idmap() -> bool {
    if runtime_name() != "ocirun" {
        let v = Command::new(runtime()).arg("--version").output().unwrap();
        let v = String::from_utf8_lossy(&v.stdout);
        if v.contains("runc version 1.0") || v.contains("runc version 1.1") {
            eprintln!(
                "skipped: {} has no idmapped mounts",
                v.lines().next().unwrap_or("")
            );
            return true;
        }
    }
    false
}

fn idmapped_tree(c: &Ctr) -> SourceTree {
    let t = SourceTree::new(c, &[]);
    chown(t.path().join("file.txt"), Some(1000), Some(1000)).unwrap();
    chown(t.path().join("sub/file.txt"), Some(1000), Some(1000)).unwrap();
    t
}

/// On-disk uid/gid 1000 shown as 0 (the mapping is written to the mount's
/// user namespace as containerID hostID size, as for linux.uidMappings).
fn map_1000_to_0() -> Value {
    json!([{"containerID": 1000, "hostID": 0, "size": 1}])
}

#[test]
fn idmap_shows_files_with_the_mapped_owner() {
    if runtime_tests::skip_rootless(
        "idmapped mounts need CAP_SYS_ADMIN in the initial user namespace",
    ) {
        return;
    }
    if skip_without_idmap() {
        return;
    }
    let mut c = Ctr::new(
        "idmap",
        &[
            "sh",
            "-c",
            "stat -c '%u:%g' /mnt/file.txt /mnt/sub/file.txt /mnt/sub",
        ],
    );
    let t = idmapped_tree(&c);
    add_mount(
        &mut c,
        json!({"destination": "/mnt", "type": "bind", "source": t.path(),
               "options": ["rbind", "idmap"],
               "uidMappings": map_1000_to_0(), "gidMappings": map_1000_to_0()}),
    );
    let out = c.run_ok();
    // Only the bind mount itself is idmapped: the submount shows the host's
    // owners.
    assert_eq!(out, "0:0\n1000:1000\n0:0\n", "{out}");
    // The host still sees uid 1000.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(t.path().join("file.txt")).unwrap().uid(), 1000);
}

#[test]
fn ridmap_maps_submounts_too() {
    if runtime_tests::skip_rootless(
        "idmapped mounts need CAP_SYS_ADMIN in the initial user namespace",
    ) {
        return;
    }
    if skip_without_idmap() {
        return;
    }
    let mut c = Ctr::new(
        "ridmap",
        &[
            "sh",
            "-c",
            "stat -c '%u:%g' /mnt/file.txt /mnt/sub/file.txt /mnt/sub",
        ],
    );
    let t = idmapped_tree(&c);
    add_mount(
        &mut c,
        json!({"destination": "/mnt", "type": "bind", "source": t.path(),
               "options": ["rbind", "ridmap"],
               "uidMappings": map_1000_to_0(), "gidMappings": map_1000_to_0()}),
    );
    let out = c.run_ok();
    // The submount's root is owned by 0 on the host, outside the mapping.
    assert_eq!(out, "0:0\n0:0\n65534:65534\n", "{out}");
}

#[test]
fn mappings_without_idmap_option_idmap_the_mount() {
    if runtime_tests::skip_rootless(
        "idmapped mounts need CAP_SYS_ADMIN in the initial user namespace",
    ) {
        return;
    }
    if skip_without_idmap() {
        return;
    }
    let mut c = Ctr::new("idmap-implicit", &["stat", "-c", "%u:%g", "/mnt/file.txt"]);
    let t = idmapped_tree(&c);
    add_mount(
        &mut c,
        json!({"destination": "/mnt", "type": "bind", "source": t.path(), "options": ["bind"],
               "uidMappings": map_1000_to_0(), "gidMappings": map_1000_to_0()}),
    );
    assert_eq!(c.run_ok(), "0:0\n");
}

/// `create` must fail and name the mount's destination.
fn assert_refused(c: &Ctr, what: &str) {
    let o = c.create();
    let out = c.output();
    assert!(!o.status.success(), "{what} was accepted");
    assert!(
        out.contains("/mnt"),
        "{what}: the error does not name /mnt: {out}"
    );
}

#[test]
fn bad_idmap_requests_are_errors() {
    if skip_without_idmap() {
        return;
    }
    let base = |name: &str, m: Value| {
        let mut c = Ctr::new(name, &["true"]);
        let src = c.bundle().join("src");
        fs::create_dir_all(&src).unwrap();
        let mut m = m;
        m["destination"] = json!("/mnt");
        if m.get("source").is_none() {
            m["source"] = json!(src);
        }
        add_mount(&mut c, m);
        c
    };
    let c = base(
        "idmap-nomaps",
        json!({"type": "bind", "options": ["bind", "idmap"]}),
    );
    assert_refused(&c, "idmap without mappings");
    let c = base(
        "idmap-uidonly",
        json!({"type": "bind", "options": ["bind", "idmap"], "uidMappings": map_1000_to_0()}),
    );
    assert_refused(&c, "uidMappings without gidMappings");
    let c = base(
        "idmap-tmpfs",
        json!({"type": "tmpfs", "source": "tmpfs", "options": ["idmap"],
               "uidMappings": map_1000_to_0(), "gidMappings": map_1000_to_0()}),
    );
    assert_refused(&c, "an idmapped tmpfs");
}

#[test]
fn features_lists_the_mount_options() {
    let o = Command::new(runtime()).arg("features").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let f: Value = serde_json::from_slice(&o.stdout).unwrap();
    let words: Vec<&str> = f["mountOptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w.as_str())
        .collect();
    for w in [
        "rro",
        "rrw",
        "rnosuid",
        "rsuid",
        "rnodev",
        "rdev",
        "rnoexec",
        "rexec",
        "rnoatime",
        "ratime",
        "rrelatime",
        "rnorelatime",
        "rnodiratime",
        "rdiratime",
        "rstrictatime",
        "rnostrictatime",
        "rnosymfollow",
        "rsymfollow",
        "nosymfollow",
        "symfollow",
    ] {
        assert!(words.contains(&w), "{w} missing from {words:?}");
    }
    if skip_without_idmap() {
        return;
    }
    assert!(words.contains(&"idmap") && words.contains(&"ridmap"));
    assert_eq!(f["linux"]["mountExtensions"]["idmap"]["enabled"], true);
}
