//! The state directory `<root>/<id>`: state.json, the exec fifo, and the lock
//! that serialises operations on one container.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, RenameFlags};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cgroups::Hierarchy;
use crate::error::{Context, Error, Kind, Result};
use crate::sys::fd::Lock;

pub const STATE_FILE: &str = "state.json";
pub const FIFO: &str = "exec.fifo";
/// The init writes an error here, or closes it by exec'ing: `start` waits on it.
pub const RESULT: &str = "exec.result";

/// What ocirun keeps about a container between invocations.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct Saved {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// Host pid of the container's init; 0 while it is being created.
    pub pid: i32,
    /// Start time of `pid` (field 22 of `/proc/<pid>/stat`), so a reused pid is
    /// never mistaken for the container.
    pub pid_start: u64,
    pub created: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    #[serde(default)]
    pub cgroups: Vec<Hierarchy>,
    #[serde(default)]
    pub owner: String,
    /// linux.resources as the container runs with them (spec, then updates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<oci_spec::runtime::LinuxResources>,
    /// The spec's hooks: poststart and poststop run from `start` and `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// Placed by the systemd cgroup driver: the unit `update` and `delete`
    /// talk to systemd about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd: Option<crate::cgroups::systemd::SavedUnit>,
    /// No mount namespace of its own: its mounts are in ours until `delete`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_mounts: bool,
}

/// Container status as runc reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// The operations whose permission depends on the container's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Start,
    Kill,
    Exec { ignore_paused: bool },
    Pause,
    Resume,
    Update,
    Delete { force: bool },
}

impl Status {
    /// Whether `op` may run in this status, in one place, with runc's
    /// words where clients match them ("container not running").
    pub fn allows(self, op: Op, id: &str) -> Result<()> {
        use Status::*;
        let ok = match op {
            Op::Start => self == Created,
            Op::Kill => matches!(self, Created | Running | Paused),
            Op::Exec { ignore_paused } => {
                matches!(self, Created | Running) || (ignore_paused && self == Paused)
            }
            Op::Pause => matches!(self, Created | Running),
            Op::Resume => self == Paused,
            Op::Update => matches!(self, Created | Running | Paused),
            // A created container goes without --force, as with runc: the
            // containerd shim deletes never-started tasks that way.
            Op::Delete { force } => force || matches!(self, Created | Stopped),
        };
        if ok {
            return Ok(());
        }
        let s = self.as_str();
        Err(Error::Container(match (op, self) {
            (Op::Kill | Op::Pause | Op::Update | Op::Exec { .. }, Stopped) => {
                format!("container {id}: container not running")
            }
            (Op::Exec { .. }, Paused) => {
                format!("cannot exec in paused container {id} (use --ignore-paused to override)")
            }
            (Op::Start, _) => format!("cannot start container {id} in status {s}"),
            (Op::Resume, _) => {
                format!("cannot resume container {id} in status {s}: it is not paused")
            }
            (Op::Delete { .. }, _) => {
                format!("cannot delete container {id} that is not stopped: {s}")
            }
            (op, _) => format!(
                "cannot {} container {id} in status {s}",
                format!("{op:?}")
                    .to_lowercase()
                    .split(' ')
                    .next()
                    .unwrap_or("use")
            ),
        })
        .with_kind(Kind::WrongStatus))
    }
}

/// Ids are single path components of a safe alphabet (as runc allows).
pub fn check_id(id: &str) -> Result<()> {
    if id.len() > 1024 {
        return Err(Error::Container(format!(
            "invalid container id {}...: longer than 1024 characters ({})",
            &id[..id.char_indices().nth(32).map_or(id.len(), |(i, _)| i)],
            id.len()
        )));
    }
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Container(format!(
            "invalid container id {id:?}: use letters, digits and _ + - . only"
        )))
    }
}

/// A locked state directory.
pub struct StateDir {
    pub path: PathBuf,
    lock: Lock,
}

impl StateDir {
    /// Atomically creates `<root>/<id>` and locks it. Fails if it exists.
    pub fn create(root: &Path, id: &str) -> Result<StateDir> {
        check_id(id)?;
        std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
            .create(root)
            .ctx(Error::Container, || {
                format!("create state root {}", root.display())
            })?;
        let path = root.join(id);
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(Error::Container(format!("container {id} already exists"))
                    .with_kind(Kind::Exists)
                    .with_errno(Errno::EEXIST));
            }
            Err(e) => {
                return Err(e).ctx(Error::Container, || {
                    format!("create state dir {}", path.display())
                });
            }
        }
        let _ = fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o711));
        match Self::lock(&path) {
            Ok(lock) => Ok(StateDir {
                path,
                lock: Lock::new(lock),
            }),
            Err(e) => {
                let _ = fs::remove_dir(&path);
                Err(e)
            }
        }
    }

    /// Opens and locks the state directory of an existing container.
    pub fn open(root: &Path, id: &str) -> Result<StateDir> {
        check_id(id)?;
        let path = root.join(id);
        let lock = Self::lock(&path)?;
        // Removed by a `delete` we waited for.
        if !path.exists() {
            return Err(Error::Container(format!("container {id} does not exist"))
                .with_kind(Kind::NotFound));
        }
        Ok(StateDir {
            path,
            lock: Lock::new(lock),
        })
    }

    fn lock(path: &Path) -> Result<Flock<File>> {
        let f = match File::open(path) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(not_found(path, &e)),
            r => r.ctx(Error::Container, || {
                format!("open state dir {}", path.display())
            })?,
        };
        Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .ctx(Error::Container, || {
                format!("lock state dir {}", path.display())
            })
    }

    /// The lock: forked children close their copy (a child that outlives a
    /// killed ocirun must not keep the container locked).
    pub(crate) fn held_lock(&self) -> &Lock {
        &self.lock
    }

    pub fn fifo(&self) -> PathBuf {
        self.path.join(FIFO)
    }

    pub fn save(&self, s: &Saved) -> Result<()> {
        save(&self.path, s)
    }

    pub fn load(&self) -> Result<Saved> {
        load(&self.path)
    }

    /// Removes the directory and everything in it.
    pub fn remove(self) -> Result<()> {
        fs::remove_dir_all(&self.path).ctx(Error::Container, || {
            format!("remove state dir {}", self.path.display())
        })
    }
}

/// Writes state.json atomically (write a temporary file, then rename).
///
/// A state.json that exists is swapped with the new file
/// (`RENAME_EXCHANGE`) and the old one unlinked, rather than replaced by a
/// plain rename: on ext4, renaming over a file makes the filesystem
/// allocate and write out the new file's blocks at once (`auto_da_alloc`),
/// which the second save of every create paid for. Readers see the old or
/// the new state either way. Where the filesystem cannot exchange, a plain
/// rename does the same job.
fn save(dir: &Path, s: &Saved) -> Result<()> {
    let tmp = dir.join(".state.json.tmp");
    let path = dir.join(STATE_FILE);
    let data = serde_json::to_vec(s).expect("state serialises");
    let ctx = || format!("write {}", path.display());
    std::os::unix::fs::OpenOptionsExt::mode(
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true),
        0o600,
    )
    .open(&tmp)
    .and_then(|mut f| std::io::Write::write_all(&mut f, &data))
    .ctx(Error::Container, ctx)?;
    let cwd = nix::fcntl::AT_FDCWD;
    match nix::fcntl::renameat2(cwd, &tmp, cwd, &path, RenameFlags::RENAME_EXCHANGE) {
        // The old state is now in `tmp`.
        Ok(()) => fs::remove_file(&tmp).ctx(Error::Container, ctx),
        // No state.json yet (the first save), or no exchange on this filesystem.
        Err(Errno::ENOENT | Errno::EINVAL | Errno::EOPNOTSUPP) => {
            fs::rename(&tmp, &path).ctx(Error::Container, ctx)
        }
        Err(e) => Err(e).ctx(Error::Container, ctx),
    }
}

/// "container <id> does not exist", as runc says, for the state dir `dir`.
fn not_found(dir: &Path, io: &std::io::Error) -> Error {
    let e = Error::Container(format!(
        "container {} does not exist",
        dir.file_name().unwrap_or_default().to_string_lossy()
    ))
    .with_kind(Kind::NotFound);
    match io.raw_os_error() {
        Some(code) => e.with_errno(Errno::from_raw(code)),
        None => e,
    }
}

/// Reads state.json without taking the lock (it is replaced atomically).
pub fn load(dir: &Path) -> Result<Saved> {
    let path = dir.join(STATE_FILE);
    // No state.json (yet, or any more: a create or delete in progress) is
    // no container to speak of, as runc says.
    let data = match fs::read(&path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(not_found(dir, &e)),
        r => r.ctx(Error::Container, || format!("read {}", path.display()))?,
    };
    serde_json::from_slice(&data)
        .map_err(|e| Error::Container(format!("parse {}: {e}", path.display())))
}

/// Start time (clock ticks since boot) of a live process, or None if it is gone.
pub fn process_start_time(pid: Pid) -> Option<u64> {
    let stat = crate::sys::fd::read_text(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // `rest` starts at field 3 (state); starttime is field 22.
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// The container's status, derived from its init process and the exec fifo,
/// as seen without the lock (`state`, `list`, `events`, `ps`): a state dir
/// with no init pid yet is `creating` while another ocirun holds its lock.
pub fn status(dir: &Path, s: &Saved) -> Status {
    if s.pid == 0 && locked(dir) {
        return Status::Creating;
    }
    status_of(dir, s)
}

impl StateDir {
    /// The status as seen by an operation that holds the lock: no other
    /// create can be running, so a state with no init pid is a create that
    /// died (`stopped`).
    pub fn status(&self, s: &Saved) -> Status {
        status_of(&self.path, s)
    }
}

fn status_of(dir: &Path, s: &Saved) -> Status {
    if s.pid == 0 {
        return Status::Stopped;
    }
    match process_start_time(Pid::from_raw(s.pid)) {
        Some(t) if t == s.pid_start => {
            if crate::cgroups::frozen(&s.cgroups) {
                Status::Paused
            } else if dir.join(FIFO).exists() {
                Status::Created
            } else {
                Status::Running
            }
        }
        _ => Status::Stopped,
    }
}

/// Whether another ocirun holds the container's lock (a create in progress).
pub fn locked(dir: &Path) -> bool {
    let Ok(f) = File::open(dir) else { return false };
    Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err()
}

/// The container's processes: its cgroup's, or, without a cgroup (rootless
/// with none writable), every process in the init's own pid namespace.
pub fn processes(saved: &Saved) -> Result<Vec<Pid>> {
    if !saved.cgroups.is_empty() {
        return crate::cgroups::from_hierarchies(saved.cgroups.clone()).procs();
    }
    let init = Pid::from_raw(saved.pid);
    if saved.pid <= 0 || process_start_time(init) != Some(saved.pid_start) {
        return Ok(Vec::new());
    }
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let Some(own) = ns(&saved.pid.to_string()) else {
        return Ok(Vec::new());
    };
    if ns("self").as_ref() == Some(&own) {
        // The runtime's pid namespace: its other processes are not told apart.
        return Ok(vec![init]);
    }
    let mut pids: Vec<Pid> = std::fs::read_dir("/proc")
        .ctx(Error::Container, || "read /proc")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| ns(&p.to_string()).as_ref() == Some(&own))
        .map(Pid::from_raw)
        .collect();
    pids.sort();
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "abc-1", "x_y.z+1", "0123456789abcdef"] {
            check_id(ok).unwrap();
        }
        for invalid in ["", ".", "..", "a/b", "../x", "a b", "a\0b", "é"] {
            assert!(check_id(invalid).is_err(), "{invalid:?}");
        }
    }

    #[test]
    fn state_dir_errors_say_their_kind() {
        let root = std::env::temp_dir().join(format!("ocirun-state-kinds-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let e = StateDir::open(&root, "gone").err().unwrap();
        assert_eq!(e.to_string(), "container gone does not exist");
        assert_eq!(e.kind(), Some(Kind::NotFound));
        assert_eq!(e.errno(), Some(Errno::ENOENT));
        let dir = StateDir::create(&root, "x").unwrap();
        let e = dir.load().unwrap_err();
        assert_eq!(e.to_string(), "container x does not exist");
        assert_eq!(e.kind(), Some(Kind::NotFound));
        drop(dir);
        let e = StateDir::create(&root, "x").err().unwrap();
        assert_eq!(e.to_string(), "container x already exists");
        assert_eq!(e.kind(), Some(Kind::Exists));
        StateDir::open(&root, "x").unwrap().remove().unwrap();
        fs::remove_dir(&root).unwrap();
    }

    #[test]
    fn saves_replace_the_state_and_leave_no_temporary() {
        let root = std::env::temp_dir().join(format!("ocirun-state-save-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let dir = StateDir::create(&root, "x").unwrap();
        for pid in [0, 42, 43] {
            let saved = Saved {
                id: "x".into(),
                pid,
                ..Default::default()
            };
            dir.save(&saved).unwrap();
            assert_eq!(dir.load().unwrap().pid, pid);
            let names: Vec<_> = fs::read_dir(&dir.path)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, [STATE_FILE], "after saving pid {pid}");
        }
        dir.remove().unwrap();
        fs::remove_dir(&root).unwrap();
    }

    #[test]
    fn refused_operations_say_wrong_status() {
        let e = Status::Stopped.allows(Op::Kill, "x").unwrap_err();
        assert_eq!(e.to_string(), "container x: container not running");
        assert_eq!(e.kind(), Some(Kind::WrongStatus));
        let e = Status::Running.allows(Op::Start, "x").unwrap_err();
        assert_eq!(e.to_string(), "cannot start container x in status running");
        assert_eq!(e.kind(), Some(Kind::WrongStatus));
        assert!(Status::Created.allows(Op::Start, "x").is_ok());
    }

    #[test]
    fn start_time_of_self_and_of_nothing() {
        assert!(process_start_time(nix::unistd::getpid()).is_some());
        assert!(process_start_time(Pid::from_raw(i32::MAX)).is_none());
    }
}
