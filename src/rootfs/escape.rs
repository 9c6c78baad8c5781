//! The walk that refuses a mount or device destination whose `..`, in the
//! path or in a symlink of the rootfs, climbs above the root.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use super::Root;
use crate::error::{Error, Result};

/// Fails if resolving `dest` inside the rootfs would climb above its root
/// through `..` (in the path or in a symlink of the rootfs). Absolute symlinks
/// are fine: inside the container they mean the container's own paths, and
/// libpathrs resolves them that way.
pub(super) fn check_no_escape(root: &Root, dest: &Path) -> Result<()> {
    let mut todo: VecDeque<OsString> = VecDeque::new();
    let push_front = |todo: &mut VecDeque<OsString>, p: &Path| {
        let parts: Vec<OsString> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect();
        for part in parts.into_iter().rev() {
            todo.push_front(part);
        }
    };
    push_front(&mut todo, dest);
    let mut cur = PathBuf::from("/");
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            if !cur.pop() {
                return Err(Error::Rootfs(format!(
                    "mount destination {} escapes the rootfs",
                    dest.display()
                )));
            }
            continue;
        }
        cur.push(&part);
        match root.readlink(&cur) {
            Some(target) => {
                links += 1;
                if links > 40 {
                    return Err(Error::Rootfs(format!(
                        "mount destination {}: too many levels of symlinks",
                        dest.display()
                    )));
                }
                let link = cur.clone();
                cur.pop();
                if target.is_absolute() {
                    cur = PathBuf::from("/");
                }
                // Count how far the link climbs relative to where it sits.
                let mut depth = cur.components().count() as isize - 1;
                for c in target.components() {
                    match c {
                        Component::ParentDir => depth -= 1,
                        Component::Normal(_) => depth += 1,
                        _ => {}
                    }
                    if depth < 0 {
                        return Err(Error::Rootfs(format!(
                            "mount destination {} escapes the rootfs via symlink {} -> {}",
                            dest.display(),
                            link.display(),
                            target.display()
                        )));
                    }
                }
                push_front(&mut todo, &target);
            }
            None => {
                // Not a symlink, or not there yet (it will be created).
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_destinations_that_climb_out_are_refused() {
        let d = std::env::temp_dir().join(format!("ocirun-escape-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::os::unix::fs::symlink("../../../../outside", d.join("up")).unwrap();
        std::os::unix::fs::symlink("/etc", d.join("abs")).unwrap();
        std::os::unix::fs::symlink("../etc", d.join("etc/self")).unwrap();
        let root = Root::open(&d).unwrap();
        // Absolute and in-root relative links are the container's own paths.
        check_no_escape(&root, Path::new("/abs/x")).unwrap();
        check_no_escape(&root, Path::new("/etc/self/x")).unwrap();
        check_no_escape(&root, Path::new("/not/there/yet")).unwrap();
        // Climbing above the root, by a link or by the path itself, is refused.
        let e = check_no_escape(&root, Path::new("/up/x")).unwrap_err();
        assert!(
            e.to_string().contains("escapes the rootfs via symlink /up"),
            "{e}"
        );
        assert!(check_no_escape(&root, Path::new("/../x")).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
