//! Debian's podman 4.3 drives ocirun as it drives runc. Every case runs
//! against both and prints a table of what each returned; the test asserts
//! runc's behaviour. podman is kept off the machine's state: its storage
//! (vfs), run root, tmp dir, locks, events, network config and containers.conf
//! are under a temp dir, the runtimes' state too (a wrapper passes `--root`),
//! and containers go in a cgroup parent of their own. The busybox image is
//! the project's OCI layout, loaded with `podman load`; no registry, no
//! network (`--network none`).
//!
//! Rootless podman too: the same private podman run as the ordinary user
//! rtuser (runtime-tests' test user, with subordinate ids), which runs the
//! runtime inside the user namespace it makes with newuidmap/newgidmap.

mod common;

use common::busybox_image;
use common::clients::{
    Runtime, Table, check_interactive, clean_up, leftovers, run_for, runtimes, text, wrapper,
};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

const IMAGE: &str = "localhost/busybox:latest";

struct Podman {
    dir: PathBuf,
    /// The containers' cgroup parent (a path below each hierarchy's root).
    cgroup: String,
    /// Run as rtuser (rootless podman).
    rootless: bool,
}

impl Drop for Podman {
    fn drop(&mut self) {
        for rt in runtimes() {
            let _ = run_for(60, self.cmd(&rt).args(["rm", "-a", "-f", "-t", "0"]));
        }
        // Rootless podman's pause process holds its user namespace open.
        let pause = std::fs::read_to_string(self.dir.join("tmp/pause.pid")).unwrap_or_default();
        if let Ok(pid) = pause.trim().parse::<i32>() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        clean_up(&self.dir, &self.cgroup);
    }
}

impl Podman {
    /// A private podman in a temp dir named after `name`, the image loaded.
    fn new(name: &str) -> Podman {
        Podman::make(name, false)
    }

    /// The same, for rootless podman: everything in the temp dir is rtuser's.
    fn rootless(name: &str) -> Podman {
        Podman::make(name, true)
    }

    fn make(name: &str, rootless: bool) -> Podman {
        assert!(
            Path::new("/usr/bin/podman").exists(),
            "podman is not installed: scripts/setup installs it"
        );
        let dir = std::env::temp_dir().join(format!("ocirun-podman-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in [
            "root",
            "runroot",
            "tmp",
            "net",
            "xdg/config",
            "xdg/data",
            "xdg/run",
            "home",
        ] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let d = dir.display();
        // The host's hard RLIMIT_NOFILE may be below podman's default for
        // root (1048576), which no runtime could then set: ask for less.
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\nnetns = \"none\"\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 events_logfile_path = \"{d}/events.log\"\ntmp_dir = \"{d}/tmp\"\nlock_type = \"file\"\n\
                 volume_path = \"{d}/volumes\"\n[network]\nnetwork_config_dir = \"{d}/net\"\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{d}/root\"\nrunroot = \"{d}/runroot\"\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .unwrap();
        let p = Podman {
            cgroup: format!("ocirun-podman-{}-{name}", std::process::id()),
            dir,
            rootless,
        };
        let rt = &runtimes()[0];
        let img = busybox_image(&p.dir);
        if rootless {
            for rt in runtimes() {
                wrapper(&p.dir, &rt);
            }
            runtime_tests::give_to_test_user(&p.dir);
            use std::os::unix::fs::PermissionsExt;
            let run = p.dir.join("xdg/run");
            std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let o = p.ok(rt, &["load", "-q", "-i", img.to_str().unwrap()]);
        let loaded = o
            .lines()
            .find_map(|l| l.strip_prefix("Loaded image: "))
            .unwrap_or_else(|| panic!("podman load said {o:?}"))
            .trim()
            .to_string();
        p.ok(rt, &["tag", &loaded, IMAGE]);
        p
    }

    /// `podman` with the private paths and `rt` as the runtime.
    fn cmd(&self, rt: &Runtime) -> Command {
        let d = &self.dir;
        let mut c = if self.rootless {
            let mut c = runtime_tests::as_test_user("podman");
            c.env("HOME", d.join("home"));
            c
        } else {
            Command::new("podman")
        };
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf"))
            .env("XDG_CONFIG_HOME", d.join("xdg/config"))
            .env("XDG_DATA_HOME", d.join("xdg/data"))
            .env("XDG_RUNTIME_DIR", d.join("xdg/run"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .arg("--runtime")
            .arg(wrapper(d, rt));
        c
    }

    fn run(&self, rt: &Runtime, args: &[&str]) -> Output {
        run_for(60, self.cmd(rt).args(args))
    }

    /// `podman wait`, given up after 15 s (a container that never ends).
    /// `podman wait`, bounded: 60 s, since under a full CI run's load
    /// runc 1.1's kill of a paused (v1-frozen) container took more than
    /// 15 s to be reported, twice; ocirun's is reported at once.
    fn wait(&self, rt: &Runtime, name: &str) -> Output {
        run_for(60, self.cmd(rt).args(["wait", name]))
    }

    /// Runs and asserts success; returns stdout.
    fn ok(&self, rt: &Runtime, args: &[&str]) -> String {
        let o = self.run(rt, args);
        assert!(
            o.status.success(),
            "podman {args:?} with {}: {:?}\n{}",
            rt.name,
            o.status,
            text(&o.stderr)
        );
        text(&o.stdout)
    }

    /// `podman run -d` of `cmd` (through the image's `sh -c` entrypoint)
    /// with `extra` options; returns the container id.
    fn start(&self, rt: &Runtime, name: &str, extra: &[&str], cmd: &str) -> String {
        let mut a = vec!["run", "-d", "--name", name];
        let parent = format!("/{}", self.cgroup);
        if !self.rootless {
            a.extend(["--cgroup-parent", &parent]);
        }
        a.extend_from_slice(extra);
        a.extend_from_slice(&[IMAGE, cmd]);
        self.ok(rt, &a)
    }

    /// The container's state as `podman inspect` reports it.
    fn state(&self, rt: &Runtime, name: &str) -> (String, i32) {
        let o = self.ok(
            rt,
            &[
                "inspect",
                "-f",
                "{{.State.Status}} {{.State.ExitCode}}",
                name,
            ],
        );
        let (s, c) = o.split_once(' ').unwrap_or((&o, "-1"));
        (s.to_string(), c.parse().unwrap_or(-1))
    }

    fn leftovers(&self) -> Vec<String> {
        leftovers(&self.dir, &self.cgroup, &[])
    }
}

fn code(o: &Output) -> String {
    o.status
        .code()
        .map_or_else(|| format!("{:?}", o.status), |c| c.to_string())
}

/// The four exit codes: the command's own (0, 1), a file that is not
/// executable (126) and a command not found (127).
#[test]
fn run_and_exec_exit_codes() {
    let p = Podman::new("codes");
    let parent = format!("/{}", p.cgroup);
    let mut t = Table::default();
    for rt in runtimes() {
        let runs: [(&str, &[&str], &str); 4] = [
            ("podman run sh -c 'exit 0'", &[IMAGE, "exit 0"], "0"),
            ("podman run sh -c 'exit 1'", &[IMAGE, "exit 1"], "1"),
            (
                "podman run /etc/passwd (not executable)",
                &["--entrypoint", "/etc/passwd", IMAGE],
                "126",
            ),
            (
                "podman run nosuchcmd (not found)",
                &["--entrypoint", "nosuchcmd", IMAGE],
                "127",
            ),
        ];
        for (case, args, want) in runs {
            let mut a = vec!["run", "--rm", "--cgroup-parent", &parent];
            a.extend_from_slice(args);
            let o = p.run(&rt, &a);
            t.record(case, &rt, want, &code(&o), &text(&o.stderr));
        }
        let name = format!("exec-{}", rt.name);
        p.start(&rt, &name, &[], "sleep 1000");
        let execs: [(&str, &[&str], &str); 4] = [
            ("podman exec sh -c 'exit 0'", &["sh", "-c", "exit 0"], "0"),
            ("podman exec sh -c 'exit 1'", &["sh", "-c", "exit 1"], "1"),
            (
                "podman exec /etc/passwd (not executable)",
                &["/etc/passwd"],
                "126",
            ),
            ("podman exec nosuchcmd (not found)", &["nosuchcmd"], "127"),
        ];
        for (case, args, want) in execs {
            let mut a = vec!["exec", &name];
            a.extend_from_slice(args);
            let o = p.run(&rt, &a);
            t.record(case, &rt, want, &code(&o), &text(&o.stderr));
        }
        p.ok(&rt, &["rm", "-f", "-t", "0", &name]);
    }
    t.check("podman exit codes");
}

/// `podman kill` of a paused container ends it (the runtime thaws it so
/// the signal is delivered); `podman stop` and `podman kill` of a container
/// in the host's PID namespace (podman sends `kill --all` there).
#[test]
fn kill_paused_and_host_pid_stop() {
    let p = Podman::new("kill");
    let mut t = Table::default();
    for rt in runtimes() {
        let n = format!("paused-{}", rt.name);
        p.start(&rt, &n, &[], "sleep 1000");
        p.ok(&rt, &["pause", &n]);
        let o = p.run(&rt, &["kill", &n]);
        t.record(
            "podman kill of a paused container",
            &rt,
            "0",
            &code(&o),
            &text(&o.stderr),
        );
        let t0 = Instant::now();
        let w = p.wait(&rt, &n);
        t.record(
            "  then its exit code (podman wait)",
            &rt,
            "137",
            &text(&w.stdout),
            &format!(
                "{} / {:?} after {:?}",
                text(&w.stderr),
                p.state(&rt, &n),
                t0.elapsed()
            ),
        );
        let _ = p.run(&rt, &["rm", "-f", "-t", "0", &n]);

        // sh -c execs sleep, which is not PID 1 here: SIGTERM ends it.
        let n = format!("hoststop-{}", rt.name);
        p.start(&rt, &n, &["--pid", "host"], "sleep 1000");
        let t0 = Instant::now();
        let o = p.run(&rt, &["stop", "-t", "20", &n]);
        let took = t0.elapsed();
        t.record(
            "podman stop of a --pid host container",
            &rt,
            "0",
            &code(&o),
            &text(&o.stderr),
        );
        let (st, c) = p.state(&rt, &n);
        t.record(
            "  then its state (SIGTERM, no SIGKILL)",
            &rt,
            "exited 143",
            &format!("{st} {c}"),
            &format!("stop took {took:?}"),
        );
        let _ = p.run(&rt, &["rm", "-f", "-t", "0", &n]);

        let n = format!("hostkill-{}", rt.name);
        p.start(&rt, &n, &["--pid", "host"], "sleep 1000");
        let o = p.run(&rt, &["kill", &n]);
        t.record(
            "podman kill of a --pid host container",
            &rt,
            "0",
            &code(&o),
            &text(&o.stderr),
        );
        let w = p.wait(&rt, &n);
        t.record(
            "  then its exit code (podman wait)",
            &rt,
            "137",
            &text(&w.stdout),
            &text(&w.stderr),
        );
        let _ = p.run(&rt, &["rm", "-f", "-t", "0", &n]);
    }
    let left = p.leftovers();
    t.check("podman kill and stop");
    assert!(
        left.is_empty(),
        "left after the containers were removed: {left:#?}"
    );
}

/// `podman run -it` on a terminal the test owns: the container's stdin is a
/// pty, input typed on the test's terminal reaches it, its exit code comes
/// back.
#[test]
fn run_interactive_on_a_terminal() {
    let p = Podman::new("tty");
    let parent = format!("/{}", p.cgroup);
    let mut t = Table::default();
    for rt in runtimes() {
        let mut cmd = p.cmd(&rt);
        cmd.args(["run", "-it", "--rm", "--cgroup-parent", &parent, IMAGE]);
        check_interactive("podman run -it", cmd, &rt, &mut t);
    }
    t.check("podman run -it");
}

/// 20 containers started at once with `podman run -d`, waited for and
/// removed: each exits 0, and nothing is left: no runtime state, no
/// cgroups, no processes, no mounts.
#[test]
fn twenty_in_parallel_and_nothing_left() {
    let p = Podman::new("par");
    let mut t = Table::default();
    for rt in runtimes() {
        let names: Vec<String> = (0..20).map(|i| format!("par-{}-{i}", rt.name)).collect();
        let parent = format!("/{}", p.cgroup);
        let kids: Vec<_> = names
            .iter()
            .map(|n| {
                p.cmd(&rt)
                    .args(["run", "-d", "--name", n, "--cgroup-parent", &parent, IMAGE])
                    .arg("sleep 2; echo done")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut started = 0;
        let mut errs = String::new();
        for k in kids {
            let o = k.wait_with_output().unwrap();
            if o.status.success() {
                started += 1;
            } else {
                errs.push_str(&text(&o.stderr));
                errs.push('\n');
            }
        }
        t.record(
            "20 x podman run -d in parallel: started",
            &rt,
            "20",
            &started.to_string(),
            &errs,
        );
        let mut a = vec!["wait"];
        a.extend(names.iter().map(String::as_str));
        let o = p.run(&rt, &a);
        let zeros = text(&o.stdout).lines().filter(|l| l.trim() == "0").count();
        t.record(
            "  podman wait: exit codes 0",
            &rt,
            "20",
            &zeros.to_string(),
            &text(&o.stderr),
        );
        let logs = p.run(&rt, &["logs", &names[0]]);
        t.record(
            "  output (podman logs)",
            &rt,
            "done",
            &text(&logs.stdout),
            &text(&logs.stderr),
        );
        let mut a = vec!["rm", "-f", "-t", "0"];
        a.extend(names.iter().map(String::as_str));
        let o = p.run(&rt, &a);
        t.record("  podman rm", &rt, "0", &code(&o), &text(&o.stderr));
        let left = p.leftovers();
        t.record(
            "  nothing left (state, cgroups, procs, mounts)",
            &rt,
            "0",
            &left.len().to_string(),
            &format!("{left:#?}"),
        );
    }
    t.check("podman, 20 containers in parallel");
}

/// Rootless podman (podman 4.3 as rtuser, its user namespace mapping rtuser
/// and its subordinate ids): run, exec, stop, kill, and their exit codes,
/// with podman's default seccomp profile.
#[test]
fn rootless_run_exec_stop_kill() {
    let p = Podman::rootless("rootless");
    let mut t = Table::default();
    for rt in runtimes() {
        let o = p.run(
            &rt,
            &[
                "run",
                "--rm",
                IMAGE,
                "id -u; sed -n 2p /proc/self/uid_map | tr -s ' '; exit 3",
            ],
        );
        t.record(
            "rootless podman run --rm: exit code",
            &rt,
            "3",
            &code(&o),
            &text(&o.stderr),
        );
        let (sub, _) = runtime_tests::test_user_subids();
        t.record(
            "  its uid and second uid_map line",
            &rt,
            &format!("1000 | 1 {sub} 65536"),
            &text(&o.stdout).trim().replace('\n', " |"),
            &text(&o.stderr),
        );
        let n = format!("rl-{}", rt.name);
        p.start(&rt, &n, &[], "trap 'exit 0' TERM; sleep 1000 & wait");
        let o = p.run(
            &rt,
            &[
                "exec",
                &n,
                "sh",
                "-c",
                "grep Seccomp: /proc/self/status; exit 5",
            ],
        );
        t.record(
            "  podman exec: exit code",
            &rt,
            "5",
            &code(&o),
            &text(&o.stderr),
        );
        t.record(
            "  podman exec: seccomp filter on (podman's profile)",
            &rt,
            "Seccomp:\t2",
            text(&o.stdout).trim(),
            &text(&o.stderr),
        );
        let o = p.run(&rt, &["stop", "-t", "10", &n]);
        t.record("  podman stop", &rt, "0", &code(&o), &text(&o.stderr));
        t.record(
            "  then its state (SIGTERM trapped)",
            &rt,
            "exited 0",
            &{
                let (s, c) = p.state(&rt, &n);
                format!("{s} {c}")
            },
            "",
        );
        p.ok(&rt, &["start", &n]);
        let o = p.run(&rt, &["kill", &n]);
        t.record(
            "  podman kill (restarted)",
            &rt,
            "0",
            &code(&o),
            &text(&o.stderr),
        );
        let w = p.wait(&rt, &n);
        t.record(
            "  then its exit code (podman wait)",
            &rt,
            "137",
            text(&w.stdout).trim(),
            &text(&w.stderr),
        );
        let o = p.run(&rt, &["rm", "-f", "-t", "0", &n]);
        t.record("  podman rm", &rt, "0", &code(&o), &text(&o.stderr));
    }
    let left = p.leftovers();
    t.check("rootless podman");
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// Rootless `podman run -it`: the terminal relay as an ordinary user.
#[test]
fn rootless_run_interactive_on_a_terminal() {
    let p = Podman::rootless("rltty");
    let mut t = Table::default();
    for rt in runtimes() {
        let mut cmd = p.cmd(&rt);
        cmd.args(["run", "-it", "--rm", IMAGE]);
        check_interactive("rootless podman run -it", cmd, &rt, &mut t);
    }
    t.check("rootless podman run -it");
}
