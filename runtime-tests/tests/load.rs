//! Load and faults, as real clients cause them: many lifecycles at once,
//! racing commands on one id, `create` killed at any point, thousands of
//! execs. Every command must succeed (or fail exactly as a client expects)
//! and nothing may be left behind: no state dir, cgroup, process or mount.
//!
//! Each test prints its failure count and wall time (`--nocapture` shows
//! them). OCIRUN_LOAD_CYCLES (default 50 per worker), OCIRUN_LOAD_EXECS
//! (default 500 per thread) and OCIRUN_LOAD_KILLS (default 100) make local
//! runs shorter; CI runs the defaults.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use runtime_tests::*;
use serde_json::{Value, json};

/// One command may take this long before it counts as hung.
const CMD_LIMIT: Duration = Duration::from_secs(60);

/// One test at a time: they measure wall time and compare the host's mounts
/// and processes before and after.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The id prefix of every container `Ctr::new(name, ..)` makes.
fn prefix(name: &str) -> String {
    format!("rt-{}-{name}-", std::process::id())
}

/// Waits for `child` at most `limit`, killing it past that.
fn wait_limited(mut child: Child, limit: Duration) -> Result<Output, String> {
    let start = Instant::now();
    let mut nap = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().map_err(|e| e.to_string()),
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no exit after {limit:?}: killed"));
            }
            Ok(None) => {
                thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("wait: {e}")),
        }
    }
}

fn runtime_cmd(root: &Path) -> Command {
    let mut c = Command::new(runtime());
    c.arg("--root").arg(root).stdin(Stdio::null());
    c
}

/// Runs the runtime with `args` to its end, capturing its output.
fn run(root: &Path, args: &[&str]) -> Result<Output, String> {
    run_limited(root, args, CMD_LIMIT)
}

fn run_limited(root: &Path, args: &[&str], limit: Duration) -> Result<Output, String> {
    let child = runtime_cmd(root)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    wait_limited(child, limit)
}

/// Spawns `create`; its output and the container's go to `log` (a pipe would
/// stay open in the container).
fn spawn_create(root: &Path, bundle: &Path, id: &str, log: &Path) -> Child {
    let out = fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    runtime_cmd(root)
        .args(["create", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap()
}

/// `create` to its end; the output's stderr is what it wrote to `log`.
fn create(root: &Path, bundle: &Path, id: &str, log: &Path) -> Result<Output, String> {
    let mut o = wait_limited(spawn_create(root, bundle, id, log), CMD_LIMIT)?;
    o.stderr = fs::read(log).unwrap_or_default();
    Ok(o)
}

fn describe(o: &Output) -> String {
    let how = match o.status.code() {
        Some(c) => format!("exit {c}"),
        None => format!("{:?}", o.status),
    };
    format!("{how}: {}", String::from_utf8_lossy(&o.stderr).trim())
}

/// Commands run and failed, by kind, with every failure's message.
#[derive(Default)]
struct Tally {
    runs: BTreeMap<String, usize>,
    failed: BTreeMap<String, usize>,
    messages: Vec<String>,
}

impl Tally {
    /// Counts a run of `what`; a failure unless it exited with `want`.
    fn check(&mut self, what: &str, ctx: &str, r: &Result<Output, String>, want: i32) -> bool {
        *self.runs.entry(what.to_string()).or_default() += 1;
        let msg = match r {
            Err(e) => e.clone(),
            Ok(o) if o.status.code() == Some(want) => return true,
            Ok(o) => describe(o),
        };
        self.fail(what, &format!("{ctx}: {msg}"));
        false
    }

    /// Counts a check that is not a command (leftovers, a deadline).
    fn count(&mut self, what: &str, problem: Option<String>) {
        *self.runs.entry(what.to_string()).or_default() += 1;
        if let Some(p) = problem {
            self.fail(what, &p);
        }
    }

    fn fail(&mut self, what: &str, msg: &str) {
        *self.failed.entry(what.to_string()).or_default() += 1;
        self.messages.push(format!("[{what}] {msg}"));
    }

    fn merge(&mut self, o: Tally) {
        for (k, v) in o.runs {
            *self.runs.entry(k).or_default() += v;
        }
        for (k, v) in o.failed {
            *self.failed.entry(k).or_default() += v;
        }
        self.messages.extend(o.messages);
    }

    /// Prints the summary and fails the test on any failure.
    fn finish(&self, test: &str, start: Instant) {
        let failed: usize = self.failed.values().sum();
        let runs: usize = self.runs.values().sum();
        let mut s = format!(
            "load {test} [{}]: {failed} failed of {runs} in {:.1}s:",
            runtime_name(),
            start.elapsed().as_secs_f64()
        );
        for (k, n) in &self.runs {
            let f = self.failed.get(k).copied().unwrap_or(0);
            s += &format!(" {k} {f}/{n};");
        }
        eprintln!("{s}");
        if failed > 0 {
            let shown: Vec<&str> = self.messages.iter().take(40).map(String::as_str).collect();
            panic!(
                "{s}\n{}{}",
                shown.join("\n"),
                if self.messages.len() > shown.len() {
                    format!("\n... {} more", self.messages.len() - shown.len())
                } else {
                    String::new()
                }
            );
        }
    }
}

/// Live processes in exactly the cgroup `/{name}` of some hierarchy.
fn in_cgroup(name: &str) -> Vec<i32> {
    processes_in_cgroup(&format!(":/{name}\n"))
}

/// The host's mounts of this test run's files (bundles, rootfs, state).
/// Other users of a shared host mount and unmount elsewhere meanwhile, so
/// the whole table's size would not tell our leaks from theirs.
fn our_mounts() -> usize {
    let ours = format!("{}/", scratch().display());
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&ours))
        .count()
}

/// What the runtime left of container `id` (whose cgroupsPath is
/// `/{cgroup}`), compared with the host's `mounts` before it.
fn leftovers(root: &Path, id: &str, cgroup: &str, mounts: usize) -> Option<String> {
    let mut v = Vec::new();
    if root.join(id).exists() {
        v.push(format!("state dir {}", root.join(id).display()));
    }
    for d in cgroup_dirs(&format!("/{cgroup}")) {
        if d.exists() {
            v.push(format!("cgroup {}", d.display()));
        }
    }
    let procs = in_cgroup(cgroup);
    if !procs.is_empty() {
        v.push(format!("processes in the cgroup {procs:?}"));
    }
    let now = our_mounts();
    if now != mounts {
        v.push(format!("host mounts {mounts} -> {now}"));
    }
    (!v.is_empty()).then(|| format!("{id}: {}", v.join(", ")))
}

/// Removes whatever a run left under `root` and in cgroups named `prefix*`,
/// so one leak does not fail every later round (and the host stays clean).
fn scrub(root: &Path, prefix: &str) {
    if let Ok(rd) = fs::read_dir(root) {
        for e in rd.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let _ = run(root, &["delete", "--force", &id]);
        }
    }
    for _ in 0..100 {
        let procs = processes_in_cgroup(prefix);
        if procs.is_empty() {
            break;
        }
        for p in procs {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        thread::sleep(Duration::from_millis(20));
    }
    let mut hierarchies = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        hierarchies.extend(rd.flatten().map(|e| e.path()));
    }
    for h in hierarchies {
        let Ok(rd) = fs::read_dir(&h) else { continue };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                for _ in 0..20 {
                    if fs::remove_dir(e.path()).is_ok() || !e.path().exists() {
                        break;
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
    let _ = fs::remove_dir_all(root);
}

/// Scrubs on drop, whatever the test's outcome.
struct Scrub {
    root: PathBuf,
    prefix: String,
}

impl Drop for Scrub {
    fn drop(&mut self) {
        scrub(&self.root, &self.prefix);
    }
}

/// Polls `state` (bounded) until the container is stopped.
fn wait_stopped(root: &Path, id: &str) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..500 {
        match run(root, &["state", id]) {
            Ok(o) if o.status.success() => {
                let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
                if v["status"] == "stopped" {
                    return Ok(());
                }
                last = format!("status {}", v["status"]);
            }
            Ok(o) => return Err(format!("state: {}", describe(&o))),
            Err(e) => return Err(format!("state: {e}")),
        }
        thread::sleep(Duration::from_millis(10));
    }
    Err(format!("never stopped ({last})"))
}

/// One worker of `sixteen_workers_cycle_the_whole_lifecycle`: `cycles` times
/// create, start, two execs, kill, delete on ids of its own.
fn lifecycle_worker(w: usize, root: PathBuf, cycles: usize, deadline: Instant) -> Tally {
    let mut t = Tally::default();
    let mut c = Ctr::new(&format!("load16-w{w}"), &["sleep", "600"]);
    c.root = root;
    c.write_config();
    let log = c.dir.join("create.log");
    for n in 0..cycles {
        if Instant::now() > deadline {
            t.fail("deadline", &format!("worker {w}: only {n} cycles in time"));
            break;
        }
        let id = format!("{}-{n}", c.id);
        let ctx = |what: &str| format!("worker {w} cycle {n} {what} {id}");
        let r = create(&c.root, &c.bundle(), &id, &log);
        if !t.check("create", &ctx("create"), &r, 0) {
            let _ = run(&c.root, &["delete", "--force", &id]);
            continue;
        }
        let r = run(&c.root, &["start", &id]);
        t.check("start", &ctx("start"), &r, 0);
        let r = run(&c.root, &["exec", &id, "true"]);
        t.check("exec true", &ctx("exec true"), &r, 0);
        let r = run(&c.root, &["exec", &id, "sh", "-c", "exit 3"]);
        t.check("exec exit 3", &ctx("exec sh -c 'exit 3'"), &r, 3);
        let r = run(&c.root, &["kill", &id, "KILL"]);
        t.check("kill", &ctx("kill"), &r, 0);
        if let Err(e) = wait_stopped(&c.root, &id) {
            t.fail("stopped", &format!("{}: {e}", ctx("after kill")));
        }
        let r = run(&c.root, &["delete", &id]);
        if !t.check("delete", &ctx("delete"), &r, 0) {
            let _ = run(&c.root, &["delete", "--force", &id]);
        }
    }
    t
}

#[test]
fn sixteen_workers_cycle_the_whole_lifecycle() {
    let _serial = serial();
    let start = Instant::now();
    let cycles = env_count("OCIRUN_LOAD_CYCLES", 50);
    let base = Ctr::new("load16", &["true"]);
    // One state root for every worker, as one containerd shares its root.
    let root = base.root.clone();
    let _scrub = Scrub {
        root: root.clone(),
        prefix: prefix("load16"),
    };
    let mounts = our_mounts();
    let deadline = Instant::now() + Duration::from_secs(600);
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let root = root.clone();
            thread::spawn(move || lifecycle_worker(w, root, cycles, deadline))
        })
        .collect();
    let mut t = Tally::default();
    for h in workers {
        t.merge(h.join().expect("worker panicked"));
    }
    let left: Vec<_> = fs::read_dir(&root)
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    t.count(
        "leftovers",
        (!left.is_empty()).then(|| format!("state dirs left: {left:?}")),
    );
    let procs = processes_in_cgroup(&prefix("load16"));
    t.count(
        "leftovers",
        (!procs.is_empty()).then(|| format!("processes left: {procs:?}")),
    );
    let now = our_mounts();
    t.count(
        "leftovers",
        (now != mounts).then(|| format!("host mounts {mounts} -> {now}")),
    );
    t.finish("16x lifecycle", start);
}

/// runc 1.1.5 fails this: its `create` checks that the state dir is absent
/// (a stat) and later makes it with MkdirAll, with no lock in between, so
/// racing creates pass the check together and trip over each other's files
/// ("exec.fifo: no such file or directory", "file exists", "unable to store
/// init state"); some rounds end with none created, or a cgroup left.
#[test]
fn ten_concurrent_creates_of_one_id_make_one_container() {
    let _serial = serial();
    let start = Instant::now();
    let c = Ctr::new("samecreate", &["sleep", "600"]);
    c.write_config();
    let _scrub = Scrub {
        root: c.root.clone(),
        prefix: prefix("samecreate"),
    };
    let mut t = Tally::default();
    for round in 0..5 {
        let mounts = our_mounts();
        let barrier = Arc::new(Barrier::new(10));
        let racers: Vec<_> = (0..10)
            .map(|i| {
                let (root, bundle, id) = (c.root.clone(), c.bundle(), c.id.clone());
                let log = c.dir.join(format!("create-{i}.log"));
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    create(&root, &bundle, &id, &log)
                })
            })
            .collect();
        let results: Vec<_> = racers.into_iter().map(|h| h.join().unwrap()).collect();
        let mut ok = 0;
        for (i, r) in results.iter().enumerate() {
            let ctx = format!("round {round} create {i}");
            match r {
                Ok(o) if o.status.success() => ok += 1,
                Ok(o) => {
                    let err = String::from_utf8_lossy(&o.stderr);
                    t.count(
                        "refused",
                        (!err.contains("already exists"))
                            .then(|| format!("{ctx}: not \"already exists\": {}", describe(o))),
                    );
                }
                Err(e) => t.fail("refused", &format!("{ctx}: {e}")),
            }
        }
        t.count(
            "one created",
            (ok != 1).then(|| format!("round {round}: {ok} of 10 creates succeeded")),
        );
        let r = run(&c.root, &["delete", "--force", &c.id]);
        t.check("delete --force", &format!("round {round}"), &r, 0);
        let left = leftovers(&c.root, &c.id, &c.id, mounts);
        if left.is_some() {
            scrub(&c.root, &c.id);
        }
        t.count("leftovers", left.map(|l| format!("round {round}: {l}")));
    }
    t.finish("10 creates of one id", start);
}

#[test]
fn two_concurrent_force_deletes_both_succeed() {
    let _serial = serial();
    let start = Instant::now();
    let c = Ctr::new("twodelete", &["sleep", "600"]);
    c.write_config();
    let _scrub = Scrub {
        root: c.root.clone(),
        prefix: prefix("twodelete"),
    };
    let log = c.dir.join("create.log");
    let mut t = Tally::default();
    for round in 0..10 {
        let mounts = our_mounts();
        let ctx = format!("round {round}");
        let r = create(&c.root, &c.bundle(), &c.id, &log);
        if !t.check("create", &ctx, &r, 0) {
            scrub(&c.root, &c.id);
            continue;
        }
        let r = run(&c.root, &["start", &c.id]);
        t.check("start", &ctx, &r, 0);
        let barrier = Arc::new(Barrier::new(2));
        let deleters: Vec<_> = (0..2)
            .map(|_| {
                let (root, id, barrier) = (c.root.clone(), c.id.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    run(&root, &["delete", "--force", &id])
                })
            })
            .collect();
        for (i, h) in deleters.into_iter().enumerate() {
            let r = h.join().unwrap();
            t.check("delete --force", &format!("{ctx} delete {i}"), &r, 0);
        }
        let left = leftovers(&c.root, &c.id, &c.id, mounts);
        if left.is_some() {
            scrub(&c.root, &c.id);
        }
        t.count("leftovers", left.map(|l| format!("{ctx}: {l}")));
    }
    t.finish("2 force deletes of one id", start);
}

/// What `state` said of a container another command holds: its status or
/// that it does not exist, never a raw errno.
fn state_answer(r: &Result<Output, String>) -> Result<String, String> {
    let o = r.as_ref().map_err(Clone::clone)?;
    let err = String::from_utf8_lossy(&o.stderr);
    let raw = ["ENOENT", "No such file", "os error", "errno"]
        .iter()
        .any(|w| err.contains(w));
    if o.status.success() {
        let v: Value = serde_json::from_slice(&o.stdout).map_err(|e| {
            format!(
                "no state JSON ({e}): {}",
                String::from_utf8_lossy(&o.stdout)
            )
        })?;
        let s = v["status"].as_str().unwrap_or_default();
        match s {
            "creating" | "created" | "running" | "stopped" | "paused" => Ok(s.to_string()),
            _ => Err(format!("unknown status {s:?}")),
        }
    } else if err.contains("does not exist") && !raw {
        Ok("does not exist".into())
    } else {
        Err(describe(o))
    }
}

/// Runs `state` while `busy` (a runtime command holding the container) runs;
/// every answer must be a status or "does not exist".
fn probe_state_during(t: &mut Tally, what: &str, c: &Ctr, busy: Child) -> Result<Output, String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let busy = thread::spawn(move || wait_limited(busy, CMD_LIMIT));
    let limit = Instant::now() + Duration::from_secs(20);
    while !busy.is_finished() && Instant::now() < limit {
        let r = run(&c.root, &["state", &c.id]);
        *t.runs.entry(what.to_string()).or_default() += 1;
        match state_answer(&r) {
            Ok(s) => *seen.entry(s).or_default() += 1,
            Err(e) => t.fail(what, &format!("state {}: {e}", c.id)),
        }
        thread::sleep(Duration::from_millis(10));
    }
    let probes: usize = t.runs[what];
    if probes < 5 {
        t.fail(
            what,
            &format!("only {probes} probes: the window was too short"),
        );
    }
    eprintln!("{what} [{}]: answers {seen:?}", runtime_name());
    busy.join().unwrap()
}

fn hook(script: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
}

#[test]
fn state_of_a_half_created_or_half_deleted_container_is_a_state() {
    let _serial = serial();
    let start = Instant::now();
    let mut t = Tally::default();
    for round in 0..3 {
        let mut c = Ctr::new("halfcreated", &["sleep", "600"]);
        c.config["hooks"] = json!({"createRuntime": [hook("sleep 1")]});
        c.write_config();
        let _scrub = Scrub {
            root: c.root.clone(),
            prefix: c.id.clone(),
        };
        let mounts = our_mounts();
        let busy = spawn_create(&c.root, &c.bundle(), &c.id, &c.out_file());
        let what = format!("state while creating {round}");
        let r = probe_state_during(&mut t, &what, &c, busy);
        let r = r.map(|mut o| {
            o.stderr = c.output().into_bytes();
            o
        });
        t.check("create", &format!("round {round}"), &r, 0);
        let r = run(&c.root, &["delete", "--force", &c.id]);
        t.check("delete --force", &format!("round {round}"), &r, 0);
        t.count("leftovers", leftovers(&c.root, &c.id, &c.id, mounts));
    }
    for round in 0..3 {
        let mut c = Ctr::new("halfdeleted", &["sleep", "600"]);
        c.config["hooks"] = json!({"poststop": [hook("sleep 1")]});
        let _scrub = Scrub {
            root: c.root.clone(),
            prefix: c.id.clone(),
        };
        let mounts = our_mounts();
        c.write_config();
        let r = create(&c.root, &c.bundle(), &c.id, &c.out_file());
        t.check("create", &format!("round {round}"), &r, 0);
        let r = run(&c.root, &["start", &c.id]);
        t.check("start", &format!("round {round}"), &r, 0);
        let busy = runtime_cmd(&c.root)
            .args(["delete", "--force", &c.id])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let what = format!("state while deleting {round}");
        let r = probe_state_during(&mut t, &what, &c, busy);
        t.check("delete --force", &format!("round {round}"), &r, 0);
        t.count("leftovers", leftovers(&c.root, &c.id, &c.id, mounts));
    }
    t.finish("state of a busy container", start);
}

/// A fixed-seed xorshift64: the same "random" kill points on every run.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Children of this process it has no handle on: orphans of a killed
/// runtime, adopted while it is a subreaper. (pid, zombie, command line)
fn adopted() -> Vec<(i32, bool, String)> {
    let me = std::process::id().to_string();
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let mut f = rest.split(' ');
        let (state, ppid) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
        if ppid == me {
            let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let cg = fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
            let cg = cg
                .lines()
                .find(|l| l.contains(":pids:") || l.starts_with("0::"));
            let wchan = fs::read_to_string(e.path().join("wchan")).unwrap_or_default();
            let fds: Vec<String> = fs::read_dir(e.path().join("fd"))
                .map(|rd| {
                    rd.flatten()
                        .filter_map(|f| {
                            let l = fs::read_link(f.path()).ok()?.display().to_string();
                            // fdinfo lists the flock held through this fd.
                            let info = e.path().join("fdinfo").join(f.file_name());
                            let info = fs::read_to_string(info).unwrap_or_default();
                            Some(if info.contains("lock:") {
                                format!("{l} (locked)")
                            } else {
                                l
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let what = format!(
                "{} (state {state}, cgroup {}, waiting in {wchan}, fds {fds:?})",
                cmd.trim(),
                cg.unwrap_or("?")
            );
            v.push((pid, state == "Z", what));
        }
    }
    v
}

/// Reaps adopted zombies; returns the adopted processes still alive.
fn reap_adopted() -> Vec<(i32, String)> {
    let mut live = Vec::new();
    for (pid, zombie, cmd) in adopted() {
        if zombie {
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        } else {
            live.push((pid, cmd));
        }
    }
    live
}

/// Makes this process the subreaper of everything it spawns until dropped.
struct Subreaper;

impl Subreaper {
    fn new() -> Subreaper {
        nix::sys::prctl::set_child_subreaper(true).unwrap();
        Subreaper
    }
}

impl Drop for Subreaper {
    fn drop(&mut self) {
        for (pid, _) in reap_adopted() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        let _ = nix::sys::prctl::set_child_subreaper(false);
    }
}

/// `delete --force` of a container whose create was killed: it has nothing
/// to wait for but the processes it kills.
const DELETE_LIMIT: Duration = Duration::from_secs(15);

/// runc 1.1.5 fails this: a create killed before it wrote state.json leaves
/// a state dir that `delete` only removes (delete.go: on ErrNotExist it
/// does RemoveAll and returns), so the container's cgroups stay behind,
/// with its `runc init` processes while they are still exiting.
#[test]
fn create_killed_at_random_points_leaves_nothing_after_delete() {
    let _serial = serial();
    let start = Instant::now();
    let kills = env_count("OCIRUN_LOAD_KILLS", 100);
    let c = Ctr::new("killcreate", &["sleep", "600"]);
    c.write_config();
    let _scrub = Scrub {
        root: c.root.clone(),
        prefix: prefix("killcreate"),
    };
    // Orphans of a killed create come to us, whatever cgroup they are in.
    let _subreaper = Subreaper::new();
    let log = c.dir.join("create.log");
    let mut rng = Prng(0x9e37_79b9_7f4a_7c15);
    let mut t = Tally::default();
    let mut finished = 0;
    for i in 0..kills {
        let id = format!("{}-{i}", c.id);
        let delay = rng.next() % 61;
        let ctx = format!("{id} killed after {delay} ms");
        let mounts = our_mounts();
        let mut child = spawn_create(&c.root, &c.bundle(), &id, &log);
        thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        if child.wait().unwrap().success() {
            finished += 1;
        }
        let r = run_limited(&c.root, &["delete", "--force", &id], DELETE_LIMIT);
        t.check("delete --force", &ctx, &r, 0);
        let left = leftovers(&c.root, &id, &c.id, mounts);
        // An orphan still alive 2 s after delete is a leak.
        let mut live = reap_adopted();
        for _ in 0..100 {
            if live.is_empty() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
            live = reap_adopted();
        }
        t.count(
            "orphans",
            (!live.is_empty()).then(|| format!("{ctx}: processes left: {live:?}")),
        );
        for (pid, _) in &live {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(*pid), None);
        }
        if left.is_some() {
            scrub(&c.root, &c.id);
        }
        t.count("leftovers", left.map(|l| format!("{ctx}: {l}")));
    }
    eprintln!(
        "create killed [{}]: {finished} of {kills} creates had finished",
        runtime_name()
    );
    t.finish("create killed at random points", start);
}

#[test]
fn two_thousand_execs_leave_only_the_init() {
    let _serial = serial();
    let start = Instant::now();
    let per_thread = env_count("OCIRUN_LOAD_EXECS", 500);
    let c = Ctr::new("execs", &["sleep", "600"]);
    let _scrub = Scrub {
        root: c.root.clone(),
        prefix: c.id.clone(),
    };
    c.create_ok();
    c.op_ok(&["start", &c.id]);
    let init = c.pid();
    let mounts = our_mounts();
    let deadline = Instant::now() + Duration::from_secs(600);
    let threads: Vec<_> = (0..4)
        .map(|n| {
            let (root, id) = (c.root.clone(), c.id.clone());
            thread::spawn(move || {
                let mut t = Tally::default();
                for i in 0..per_thread {
                    if Instant::now() > deadline {
                        t.fail("deadline", &format!("thread {n}: only {i} execs in time"));
                        break;
                    }
                    let r = run(&root, &["exec", &id, "true"]);
                    t.check("exec true", &format!("thread {n} exec {i}"), &r, 0);
                }
                t
            })
        })
        .collect();
    let mut t = Tally::default();
    for h in threads {
        t.merge(h.join().unwrap());
    }
    let procs = in_cgroup(&c.id);
    t.count(
        "only the init",
        (procs != [init]).then(|| format!("processes in the cgroup {procs:?}, init {init}")),
    );
    let r = run(&c.root, &["delete", "--force", &c.id]);
    t.check("delete --force", "after the execs", &r, 0);
    t.count("leftovers", leftovers(&c.root, &c.id, &c.id, mounts));
    t.finish("4x500 execs", start);
}
