//! Cgroups behind one `Manager` trait, with a v2 (unified) and a v1/hybrid
//! back-end: every container gets its own cgroup at `cgroupsPath` in every
//! hierarchy, its `linux.resources` written there (`resources.rs` translates,
//! per version), freezing for pause/resume and `kill --all`, statistics and
//! OOM notification for `events` (`stats.rs`); removed on delete.
//!
//! Why not cgroups-rs: 0.5 pulls zbus (an async D-Bus stack) into every
//! build, its v1 hierarchy ignores the hybrid `unified` mount that containerd
//! and runc expect a container to join too, and it has no v2 device program.
//! What a runtime needs is mkdir, rmdir and writes of values whose
//! translation (`resources.rs`) is the real work; that is what this does.

pub mod resources;
pub mod stats;
pub mod systemd;

use std::fs;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

pub mod devices;

/// One mounted hierarchy and the container's directory in it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where the hierarchy is mounted on the host, e.g. `/sys/fs/cgroup/memory`.
    pub mount: PathBuf,
    /// `true` for cgroup2.
    pub v2: bool,
    /// For v1, the mount's controller options (`cpu,cpuacct`, `name=systemd`).
    pub controllers: String,
    /// The container's cgroup directory in this hierarchy.
    pub dir: PathBuf,
}

/// What every back-end does for a container.
pub trait Manager {
    /// Creates the container's cgroup directories.
    fn create(&self) -> Result<()>;
    /// Moves `pid` into the container's cgroup in every hierarchy.
    fn apply(&self, pid: Pid) -> Result<()>;
    /// The pids in the container's cgroup.
    fn procs(&self) -> Result<Vec<Pid>>;
    /// Removes the container's cgroup directories (missing ones are fine).
    fn destroy(&self) -> Result<()>;
    /// The hierarchies, for saving in state.json.
    fn hierarchies(&self) -> &[Hierarchy];
    /// Writes `linux.resources`. Values are checked before anything is
    /// written; if the kernel refuses one, the single-valued files already
    /// written are put back, so a failed `update` leaves the old limits.
    fn set(&self, r: &LinuxResources) -> Result<()>;
    /// Whether the cgroup exists only once `apply` has run (the systemd
    /// driver), which then also writes the device rules and limits it was
    /// built with; otherwise `create` makes it and the caller writes them.
    fn limits_at_apply(&self) -> bool {
        false
    }
    /// The systemd unit the container is placed in, for state.json.
    fn systemd_unit(&self) -> Option<systemd::SavedUnit> {
        None
    }
}

/// Freezes (`true`) or thaws every process of the container's cgroup and
/// waits until the kernel reports the state reached: the v1 freezer when
/// there is one, else cgroup.freeze of the unified hierarchy.
pub fn freeze(hs: &[Hierarchy], on: bool) -> Result<()> {
    let r = freeze_wait(hs, on);
    // The last process gone, the cgroup can vanish under us (systemd removes
    // an empty scope): nothing is left to thaw.
    let used = v1_of(hs, "freezer").or_else(|| hs.iter().find(|h| h.v2));
    if r.is_err() && !on && used.is_some_and(|h| !h.dir.exists()) {
        return Ok(());
    }
    r
}

fn freeze_wait(hs: &[Hierarchy], on: bool) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    if let Some(h) = v1_of(hs, "freezer") {
        let state = h.dir.join("freezer.state");
        let want = if on { "FROZEN" } else { "THAWED" };
        let mut n = 0u32;
        loop {
            // Re-asked now and then: a fork while freezing can leave it FREEZING.
            if n.is_multiple_of(50) {
                write(&state, want)?;
            }
            let now = crate::sys::fd::read_text(&state).unwrap_or_default();
            if now.trim() == want {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::Cgroup(format!(
                    "{} stays {} after asking for {want}",
                    state.display(),
                    now.trim()
                )));
            }
            n += 1;
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    let Some(h) = hs.iter().find(|h| h.v2) else {
        if hs.is_empty() {
            // Rootless without a delegated cgroup.
            return Err(Error::Cgroup(
                "no freezer: the container has no cgroup of its own (rootless needs a delegated cgroup v2 subtree to pause)"
                    .into(),
            ));
        }
        return Err(Error::Cgroup(
            "no freezer: neither a v1 freezer hierarchy nor cgroup v2".into(),
        ));
    };
    write(&h.dir.join("cgroup.freeze"), if on { "1" } else { "0" })?;
    let events = h.dir.join("cgroup.events");
    let want = if on { "frozen 1" } else { "frozen 0" };
    loop {
        let now = crate::sys::fd::read_text(&events)
            .ctx(Error::Cgroup, || format!("read {}", events.display()))?;
        if now.lines().any(|line| line.trim() == want) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Cgroup(format!(
                "{} never reported {want:?}",
                events.display()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Whether the container's cgroup is frozen (status `paused`).
pub fn frozen(hs: &[Hierarchy]) -> bool {
    if let Some(h) = v1_of(hs, "freezer") {
        return crate::sys::fd::read_text(h.dir.join("freezer.state"))
            .is_ok_and(|s| s.trim() == "FROZEN" || s.trim() == "FREEZING");
    }
    hs.iter().find(|h| h.v2).is_some_and(|h| {
        crate::sys::fd::read_text(h.dir.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
    })
}

/// The v1 hierarchy that has `ctrl`.
pub fn v1_of<'a>(hs: &'a [Hierarchy], ctrl: &str) -> Option<&'a Hierarchy> {
    hs.iter()
        .find(|h| !h.v2 && h.controllers.split(',').any(|c| c == ctrl))
}

/// Enables `ctrls` (all the parent offers, when None) in cgroup.subtree_control
/// of every level down to the container's parent, so the container's own
/// directory gets their files (cgroup v2). The hierarchy's root is included
/// only on a pure v2 host (as runc); a hybrid host's unified root is the
/// host's to configure.
fn enable_controllers(h: &Hierarchy, ctrls: Option<&[&str]>, root_too: bool) {
    let rel = h.dir.strip_prefix(&h.mount).unwrap_or(&h.dir);
    let comps: Vec<_> = rel.components().collect();
    let mut levels = vec![h.mount.clone()];
    let mut cur = h.mount.clone();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        cur.push(c);
        levels.push(cur.clone());
    }
    for level in levels.into_iter().skip(usize::from(!root_too)) {
        let offered =
            crate::sys::fd::read_text(level.join("cgroup.controllers")).unwrap_or_default();
        let enabled =
            crate::sys::fd::read_text(level.join("cgroup.subtree_control")).unwrap_or_default();
        let want: Vec<String> = offered
            .split_whitespace()
            .filter(|o| ctrls.is_none_or(|wanted| wanted.contains(o)))
            .filter(|o| !enabled.split_whitespace().any(|e| e == *o))
            .map(|c| format!("+{c}"))
            .collect();
        if want.is_empty() {
            continue;
        }
        let file = level.join("cgroup.subtree_control");
        if crate::sys::fd::write_existing(&file, want.join(" ").as_bytes()).is_err() {
            // One at a time: a controller that cannot be enabled here (a
            // threaded subtree, processes in an inner node) is reported
            // when a value for it is written.
            for c in &want {
                let _ = crate::sys::fd::write_existing(&file, c.as_bytes());
            }
        }
    }
}

/// Writes `writes`, each into the directory `dir_of` picks; on a failure the
/// single-valued files already written get their old value back.
fn apply_writes(
    writes: &[resources::CgroupWrite],
    dir_of: impl Fn(&resources::CgroupWrite) -> Result<PathBuf>,
) -> Result<()> {
    let mut undo: Vec<(PathBuf, String)> = Vec::new();
    let mut done = vec![false; writes.len()];
    let result = (|| {
        for i in 0..writes.len() {
            if done[i] {
                continue;
            }
            let wr = &writes[i];
            let mut path = dir_of(wr)?.join(&wr.file);
            // v1 blkio without CFQ: BFQ's files take the same weights.
            if !path.exists()
                && let Some(alt) = bfq_file(&wr.file)
                && path.with_file_name(alt).exists()
            {
                path = path.with_file_name(alt);
            }
            if !path.exists() {
                return Err(Error::Cgroup(format!(
                    "cannot set {} to {:?}: {} does not exist (controller {} not available there)",
                    wr.file,
                    wr.value,
                    path.display(),
                    if wr.ctrl.is_empty() {
                        "cgroup"
                    } else {
                        wr.ctrl
                    }
                )));
            }
            let old = crate::sys::fd::read_text(&path)
                .ok()
                .filter(|o| restorable(&wr.file, o));
            match crate::sys::fd::write_existing(&path, wr.value.as_bytes()) {
                Ok(()) => {}
                // v1: memory+swap must stay >= memory; raising both means
                // the swap limit first.
                Err(e)
                    if wr.file == "memory.limit_in_bytes"
                        && e.raw_os_error() == Some(libc::EINVAL) =>
                {
                    let Some(j) = (i + 1..writes.len())
                        .find(|j| writes[*j].file == "memory.memsw.limit_in_bytes")
                    else {
                        return Err(e).ctx(Error::Cgroup, || write_what(&path, &wr.value));
                    };
                    let sw = path.with_file_name("memory.memsw.limit_in_bytes");
                    let sw_old = crate::sys::fd::read_text(&sw).ok();
                    crate::sys::fd::write_existing(&sw, writes[j].value.as_bytes())
                        .ctx(Error::Cgroup, || write_what(&sw, &writes[j].value))?;
                    if let Some(o) = sw_old {
                        undo.push((sw, o));
                    }
                    done[j] = true;
                    crate::sys::fd::write_existing(&path, wr.value.as_bytes())
                        .ctx(Error::Cgroup, || write_what(&path, &wr.value))?;
                }
                Err(e) => return Err(e).ctx(Error::Cgroup, || write_what(&path, &wr.value)),
            }
            if let Some(o) = old {
                undo.push((path, o));
            }
        }
        Ok(())
    })();
    if result.is_err() {
        for (path, old) in undo.into_iter().rev() {
            let _ = crate::sys::fd::write_existing(&path, old.trim().as_bytes());
        }
    }
    result
}

fn bfq_file(file: &str) -> Option<&'static str> {
    match file {
        "blkio.weight" => Some("blkio.bfq.weight"),
        "blkio.weight_device" => Some("blkio.bfq.weight_device"),
        _ => None,
    }
}

/// The context of a failed write of `value` to `path`.
fn write_what(path: &Path, value: &str) -> String {
    format!("write {value:?} to {}", path.display())
}

/// Whether a file's old content can simply be written back (one value, not
/// a per-device or per-key table).
fn restorable(file: &str, old: &str) -> bool {
    let keyed = file.contains("device")
        || matches!(
            file,
            "io.max"
                | "io.weight"
                | "io.bfq.weight"
                | "rdma.max"
                | "net_prio.ifpriomap"
                | "memory.oom_control"
        );
    !keyed && old.trim().lines().count() == 1
}

/// memory.checkBeforeUpdate: refuse a limit below what is in use now.
fn check_memory_usage(r: &LinuxResources, dir: &Path, usage_file: &str) -> Result<()> {
    let Some(m) = r.memory() else { return Ok(()) };
    let (Some(true), Some(limit)) = (m.check_before_update(), m.limit()) else {
        return Ok(());
    };
    if limit <= 0 {
        return Ok(());
    }
    let usage: i64 = crate::sys::fd::read_text(dir.join(usage_file))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if usage > limit {
        return Err(Error::Cgroup(format!(
            "memory.limit {limit} is below the current usage {usage} (checkBeforeUpdate)"
        )));
    }
    Ok(())
}

/// cgroup v2 only (`/sys/fs/cgroup` is cgroup2).
pub struct V2 {
    h: [Hierarchy; 1],
}

/// cgroup v1, with the hybrid `unified` cgroup2 mount joined too when present.
pub struct V1 {
    hs: Vec<Hierarchy>,
}

/// Builds the cgroupfs manager for a container from its cgroupsPath.
pub fn for_container(cgroups_path: Option<&Path>, id: &str) -> Result<Box<dyn Manager>> {
    let rel = match cgroups_path {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from(id),
    };
    check_path(&rel)?;
    let mountinfo = crate::sys::fd::read_text("/proc/self/mountinfo")
        .ctx(Error::Cgroup, || "read /proc/self/mountinfo")?;
    let own = crate::sys::fd::read_text("/proc/self/cgroup")
        .ctx(Error::Cgroup, || "read /proc/self/cgroup")?;
    let hs = plan(&mountinfo, &own, &rel)?;
    Ok(from_hierarchies(hs))
}

/// Where a rootless container without a writable cgroup of its own sits
/// in every hierarchy: the runtime's own cgroups (which it inherits), with
/// the writable ones in `kept` taken from there instead.
pub fn rootless_view(kept: &[Hierarchy]) -> Result<Vec<Hierarchy>> {
    let mountinfo = crate::sys::fd::read_text("/proc/self/mountinfo")
        .ctx(Error::Cgroup, || "read /proc/self/mountinfo")?;
    let own = crate::sys::fd::read_text("/proc/self/cgroup")
        .ctx(Error::Cgroup, || "read /proc/self/cgroup")?;
    let mut hs = plan(&mountinfo, &own, Path::new(""))?;
    for h in &mut hs {
        if let Some(k) = kept.iter().find(|k| k.mount == h.mount) {
            h.dir = k.dir.clone();
        }
    }
    Ok(hs)
}

/// The systemd driver for a new container (`--systemd-cgroup`): its
/// limits and, unless rootless, its device rules go to systemd and the
/// files once the unit is started with the init (`apply`).
pub fn systemd_for_container(
    linux: &oci_spec::runtime::Linux,
    id: &str,
    rootless: bool,
) -> Result<Box<dyn Manager>> {
    systemd::bus::check_built_in()?;
    let path = linux.cgroups_path().as_ref().map(|p| p.to_string_lossy());
    let devices = (!rootless).then(|| {
        devices::effective_rules(
            linux
                .resources()
                .as_ref()
                .and_then(|r| r.devices().as_deref())
                .unwrap_or_default(),
            linux.devices().as_deref().unwrap_or_default(),
        )
    });
    Ok(Box::new(systemd::Systemd::for_container(
        path.as_deref(),
        id,
        rootless,
        linux.resources().clone(),
        devices,
    )?))
}

/// Rebuilds a container's manager from state.json: the systemd driver
/// when it was placed by systemd (`update` and `delete` talk to systemd),
/// else the cgroupfs one.
pub fn from_saved(hs: &[Hierarchy], unit: Option<&systemd::SavedUnit>) -> Box<dyn Manager> {
    match unit {
        Some(u) => Box::new(systemd::Systemd::from_saved(hs, u)),
        None => from_hierarchies(hs.to_vec()),
    }
}

/// The container's hierarchies moved into the sub-cgroups `exec --cgroup`
/// names: `PATH` for every hierarchy, or `CONTROLLER[,CONTROLLER]:PATH` for
/// the v1 hierarchies of those controllers. Each must exist below the
/// container's cgroup.
pub fn sub_cgroups(hs: &[Hierarchy], specs: &[String]) -> Result<Vec<Hierarchy>> {
    let mut out = hs.to_vec();
    for spec in specs {
        let (ctrls, path) = match spec.split_once(':') {
            Some((c, p)) => (Some(c.split(',').collect::<Vec<_>>()), p),
            None => (None, spec.as_str()),
        };
        let rel = Path::new(path.trim_start_matches('/'));
        if path.is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(Error::Usage(format!(
                "--cgroup {spec}: {path:?} is not a path below the container's cgroup"
            )));
        }
        let mut matched = false;
        for (h, orig) in out.iter_mut().zip(hs) {
            let hit = match &ctrls {
                None => true,
                Some(cs) => {
                    !h.v2
                        && cs
                            .iter()
                            .all(|c| orig.controllers.split(',').any(|x| x == *c))
                }
            };
            if hit {
                h.dir = orig.dir.join(rel);
                if !h.dir.is_dir() {
                    return Err(Error::Usage(format!(
                        "--cgroup {spec}: {} does not exist",
                        h.dir.display()
                    )));
                }
                matched = true;
            }
        }
        if !matched {
            return Err(Error::Usage(format!(
                "--cgroup {spec}: no hierarchy of the container has those controllers"
            )));
        }
    }
    Ok(out)
}

/// Rootless: the hierarchies in which this user may make or join the
/// container's cgroup (a delegated subtree): its directory exists with a
/// writable `cgroup.procs`, or its nearest existing ancestor is writable.
pub fn writable(hs: &[Hierarchy]) -> Vec<Hierarchy> {
    use nix::unistd::{AccessFlags, access};
    let ok = |p: &Path| access(p, AccessFlags::W_OK).is_ok();
    hs.iter()
        .filter(|h| {
            if h.dir.is_dir() {
                return ok(&h.dir.join("cgroup.procs"));
            }
            h.dir
                .ancestors()
                .skip(1)
                .take_while(|a| a.starts_with(&h.mount))
                .find(|a| a.is_dir())
                .is_some_and(ok)
        })
        .cloned()
        .collect()
}

/// Rootless: every limit in `r` needs the cgroup of its controller among
/// the writable ones (`kept`), as runc's rootless rules say; device rules
/// do not count (they are not expected to work without privilege).
pub fn check_rootless_limits(
    all: &[Hierarchy],
    kept: &[Hierarchy],
    r: &LinuxResources,
) -> Result<()> {
    let mut r = r.clone();
    r.set_devices(None);
    let pure_v2 = all.len() == 1 && all[0].v2;
    let writes = if pure_v2 {
        resources::v2(&r, resources::V2Env::default())?
    } else {
        resources::v1(&r)?
    };
    for write in writes {
        let has = |hs: &[Hierarchy]| -> Option<PathBuf> {
            if pure_v2 {
                hs.first().map(|h| h.dir.clone())
            } else {
                v1_of(hs, write.ctrl)
                    .or_else(|| {
                        (write.ctrl == "hugetlb")
                            .then(|| hs.iter().find(|h| h.v2))
                            .flatten()
                    })
                    .map(|h| h.dir.clone())
            }
        };
        if has(kept).is_none() {
            let place = match has(all) {
                Some(d) => format!(
                    "{} is not writable by uid {}",
                    d.display(),
                    nix::unistd::geteuid()
                ),
                None => format!("no {} hierarchy is mounted", write.ctrl),
            };
            return Err(Error::Cgroup(format!(
                "rootless: cannot set {} limit ({} {:?}): container could not join or create cgroup ({place})",
                write.ctrl, write.file, write.value
            )));
        }
    }
    Ok(())
}

pub fn from_hierarchies(hs: Vec<Hierarchy>) -> Box<dyn Manager> {
    if hs.len() == 1 && hs[0].v2 && hs[0].mount == Path::new("/sys/fs/cgroup") {
        let h = hs.into_iter().next().expect("one hierarchy");
        Box::new(V2 { h: [h] })
    } else {
        Box::new(V1 { hs })
    }
}

fn check_path(p: &Path) -> Result<()> {
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(Error::Cgroup(format!(
            "cgroupsPath {} must not contain \"..\"",
            p.display()
        )));
    }
    if p.to_string_lossy().contains(':') && !p.is_absolute() {
        return Err(Error::Cgroup(format!(
            "cgroupsPath {} looks like a systemd \"slice:prefix:name\" path: use --systemd-cgroup for the systemd cgroup driver",
            p.display()
        )));
    }
    Ok(())
}

struct Mount<'a> {
    root: &'a str,
    point: &'a str,
    fstype: &'a str,
    superopts: &'a str,
}

fn parse_mountinfo(text: &str) -> Vec<Mount<'_>> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let p: Vec<&str> = post.split(' ').collect();
            if f.len() < 5 || p.len() < 3 {
                return None;
            }
            Some(Mount {
                root: f[3],
                point: f[4],
                fstype: p[0],
                superopts: p[2],
            })
        })
        .collect()
}

/// Joins a cgroup path to a hierarchy mount, allowing for mounts whose root is
/// not the hierarchy root (as inside another container).
fn dir_in(mount: &Mount, cg: &Path) -> PathBuf {
    let rel = cg.strip_prefix(mount.root).unwrap_or(cg);
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    Path::new(mount.point).join(rel)
}

/// Pure planning: from mountinfo, our own /proc/self/cgroup and the requested
/// path, the container's directory in every hierarchy.
fn plan(mountinfo: &str, own: &str, rel: &Path) -> Result<Vec<Hierarchy>> {
    let mounts = parse_mountinfo(mountinfo);
    let target = |own_path: &str| -> PathBuf {
        if rel.is_absolute() {
            rel.to_path_buf()
        } else {
            Path::new(own_path).join(rel)
        }
    };
    let mut out = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let cg = target(path);
        if ctrls.is_empty() {
            // The unified hierarchy (pure v2, or hybrid's `unified` mount).
            if let Some(m) = mounts.iter().find(|m| m.fstype == "cgroup2") {
                out.push(Hierarchy {
                    mount: m.point.into(),
                    v2: true,
                    controllers: String::new(),
                    dir: dir_in(m, &cg),
                });
            }
            continue;
        }
        let wanted: Vec<&str> = ctrls.split(',').collect();
        let found = mounts.iter().find(|m| {
            m.fstype == "cgroup" && {
                let opts: Vec<&str> = m.superopts.split(',').collect();
                wanted.iter().all(|option| opts.contains(option))
            }
        });
        if let Some(m) = found {
            out.push(Hierarchy {
                mount: m.point.into(),
                v2: false,
                controllers: ctrls.to_string(),
                dir: dir_in(m, &cg),
            });
        }
    }
    if out.is_empty() {
        return Err(Error::Cgroup(
            "no cgroup hierarchy is mounted (looked in /proc/self/mountinfo)".into(),
        ));
    }
    // v1 before the unified mount, so v1 tools see the container first.
    out.sort_by_key(|h| h.v2);
    Ok(out)
}

fn mkdir_all(h: &Hierarchy) -> Result<()> {
    let cpuset = !h.v2 && h.controllers.split(',').any(|c| c == "cpuset");
    if !cpuset {
        return fs::create_dir_all(&h.dir).ctx(Error::Cgroup, || {
            format!("create cgroup {}", h.dir.display())
        });
    }
    // v1 cpuset: a new cgroup starts with empty cpus/mems and refuses tasks
    // until they are set; inherit them from the parent level by level.
    let rel = h.dir.strip_prefix(&h.mount).unwrap_or(&h.dir);
    // A level made here starts empty (or, with the parent's
    // cgroup.clone_children, with the parent's values): it is given the
    // parent's without being read first.
    let mut cur = h.mount.clone();
    for c in rel.components() {
        let parent = cur.clone();
        cur.push(c);
        let made = match fs::create_dir(&cur) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
            Err(e) => {
                return Err(e).ctx(Error::Cgroup, || format!("create cgroup {}", cur.display()));
            }
        };
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let empty = made
                || crate::sys::fd::read_text(cur.join(f))
                    .unwrap_or_default()
                    .trim()
                    .is_empty();
            if empty {
                let theirs = crate::sys::fd::read_text(parent.join(f)).unwrap_or_default();
                write(&cur.join(f), theirs.trim())?;
            }
        }
    }
    Ok(())
}

fn write(path: &Path, value: &str) -> Result<()> {
    crate::sys::fd::write_existing(path, value.as_bytes()).ctx(Error::Cgroup, || {
        format!("write {value:?} to {}", path.display())
    })
}

fn read_procs(dir: &Path) -> Result<Vec<Pid>> {
    let path = dir.join("cgroup.procs");
    match crate::sys::fd::read_text(&path) {
        Ok(t) => Ok(t
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .map(Pid::from_raw)
            .collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).ctx(Error::Cgroup, || format!("read {}", path.display())),
    }
}

fn rmdir(dir: &Path) -> Result<()> {
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).ctx(Error::Cgroup, || format!("remove cgroup {}", dir.display())),
    }
}

impl Manager for V2 {
    fn create(&self) -> Result<()> {
        // As runc: every controller the hierarchy offers, so limits and
        // statistics work whatever the spec asks later (`update`).
        mkdir_all(&self.h[0])?;
        enable_controllers(&self.h[0], None, true);
        Ok(())
    }
    fn set(&self, r: &LinuxResources) -> Result<()> {
        let dir = &self.h[0].dir;
        let env = resources::V2Env {
            bfq: dir.join("io.bfq.weight").exists(),
        };
        let writes = resources::v2(r, env)?;
        check_memory_usage(r, dir, "memory.current")?;
        apply_writes(&writes, |_| Ok(dir.clone()))
    }
    fn apply(&self, pid: Pid) -> Result<()> {
        write(&self.h[0].dir.join("cgroup.procs"), &pid.to_string())
    }
    fn procs(&self) -> Result<Vec<Pid>> {
        read_procs(&self.h[0].dir)
    }
    fn destroy(&self) -> Result<()> {
        rmdir(&self.h[0].dir)
    }
    fn hierarchies(&self) -> &[Hierarchy] {
        &self.h
    }
}

impl Manager for V1 {
    fn create(&self) -> Result<()> {
        self.hs.iter().try_for_each(mkdir_all)
    }
    fn set(&self, r: &LinuxResources) -> Result<()> {
        let mut writes = resources::v1(r)?;
        // Hybrid hosts may have hugetlb only in the unified hierarchy.
        let unified = self.hs.iter().find(|h| h.v2);
        let mut v2_writes = Vec::new();
        if v1_of(&self.hs, "hugetlb").is_none()
            && let Some(u) = unified
            && writes.iter().any(|write| write.ctrl == "hugetlb")
        {
            writes.retain(|write| write.ctrl != "hugetlb");
            let mut only = LinuxResources::default();
            only.set_hugepage_limits(r.hugepage_limits().clone());
            v2_writes = resources::v2(&only, resources::V2Env::default())?;
            enable_controllers(u, Some(&["hugetlb"]), false);
        }
        if let Some(h) = v1_of(&self.hs, "memory") {
            check_memory_usage(r, &h.dir, "memory.usage_in_bytes")?;
        }
        apply_writes(&writes, |write| {
            v1_of(&self.hs, write.ctrl)
                .map(|h| h.dir.clone())
                .ok_or_else(|| {
                    Error::Cgroup(format!(
                        "cannot set {} to {:?}: the cgroup v1 {} controller is not mounted",
                        write.file, write.value, write.ctrl
                    ))
                })
        })?;
        if let Some(u) = unified {
            apply_writes(&v2_writes, |_| Ok(u.dir.clone()))?;
        }
        Ok(())
    }
    fn apply(&self, pid: Pid) -> Result<()> {
        let p = pid.to_string();
        self.hs
            .iter()
            .try_for_each(|h| write(&h.dir.join("cgroup.procs"), &p))
    }
    fn procs(&self) -> Result<Vec<Pid>> {
        // A process is in every hierarchy, except while it is being moved
        // (or was, by a create killed half-way): the union of all of them.
        let mut all = Vec::new();
        for h in &self.hs {
            match read_procs(&h.dir) {
                Ok(p) => all.extend(p),
                Err(_) if !h.dir.exists() => {}
                Err(e) => return Err(e),
            }
        }
        all.sort_by_key(|p| p.as_raw());
        all.dedup();
        Ok(all)
    }
    fn destroy(&self) -> Result<()> {
        let mut first_err = None;
        for h in &self.hs {
            if let Err(e) = rmdir(&h.dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
    fn hierarchies(&self) -> &[Hierarchy] {
        &self.hs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
";
    const HYBRID_OWN: &str = "4:memory:/user/me\n3:cpu,cpuacct:/\n1:name=systemd:/\n0::/\n";

    #[test]
    fn thawing_a_removed_cgroup_is_done_freezing_it_is_not() {
        let gone = |v2: bool| Hierarchy {
            mount: PathBuf::from("/nonexistent"),
            v2,
            controllers: if v2 { String::new() } else { "freezer".into() },
            dir: PathBuf::from("/nonexistent/ocirun-removed-scope"),
        };
        for v2 in [true, false] {
            let hs = [gone(v2)];
            assert!(freeze(&hs, false).is_ok(), "v2 {v2}");
            let e = freeze(&hs, true).unwrap_err().to_string();
            assert!(e.contains("/nonexistent/ocirun-removed-scope"), "{e}");
        }
        // No cgroup at all still says why it cannot thaw.
        assert!(freeze(&[], false).is_err());
    }

    #[test]
    fn hybrid_places_in_every_v1_controller_and_unified() {
        let hs = plan(HYBRID, HYBRID_OWN, Path::new("/c1")).unwrap();
        let dirs: Vec<_> = hs
            .iter()
            .map(|h| h.dir.to_str().unwrap().to_string())
            .collect();
        assert_eq!(
            dirs,
            [
                "/sys/fs/cgroup/memory/c1",
                "/sys/fs/cgroup/cpu,cpuacct/c1",
                "/sys/fs/cgroup/systemd/c1",
                "/sys/fs/cgroup/unified/c1"
            ]
        );
    }

    #[test]
    fn relative_path_is_under_our_own_cgroup() {
        let hs = plan(HYBRID, HYBRID_OWN, Path::new("x/y")).unwrap();
        assert_eq!(hs[0].dir, Path::new("/sys/fs/cgroup/memory/user/me/x/y"));
        assert_eq!(hs[1].dir, Path::new("/sys/fs/cgroup/cpu,cpuacct/x/y"));
    }

    #[test]
    fn pure_v2() {
        let mi = "25 20 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let hs = plan(mi, "0::/init.scope\n", Path::new("/a/b")).unwrap();
        assert_eq!(hs.len(), 1);
        assert!(hs[0].v2);
        assert_eq!(hs[0].dir, Path::new("/sys/fs/cgroup/a/b"));
        let m = from_hierarchies(hs);
        assert_eq!(m.hierarchies().len(), 1);
    }

    #[test]
    fn mount_root_not_slash() {
        let mi = "25 20 0:22 /outer /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let hs = plan(mi, "0::/outer/me\n", Path::new("c")).unwrap();
        assert_eq!(hs[0].dir, Path::new("/sys/fs/cgroup/me/c"));
    }

    #[test]
    fn bad_paths() {
        assert!(check_path(Path::new("/a/../b")).is_err());
        assert!(check_path(Path::new("system.slice:ocirun:x")).is_err());
        assert!(check_path(Path::new("/ok/path")).is_ok());
    }
}
