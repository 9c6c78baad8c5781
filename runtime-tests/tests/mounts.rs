//! Mount options, checked from inside the container: the recursive
//! attributes (`rro`, `rnosuid`, `rnoatime`, ...) on the submounts of a bind
//! mount, `nosymfollow` and `rootfsPropagation`.

use std::fs;
use std::os::unix::fs::symlink;
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
        mount(&["-t", "tmpfs", "-o", "mode=755", "tmpfs"], &sub);
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
}
