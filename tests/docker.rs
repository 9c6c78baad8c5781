//! Debian's Docker 20.10 drives ocirun as it drives runc. The test starts a
//! private dockerd (data root, exec root, pid file and socket in a temp dir,
//! vfs storage, no bridge, no iptables) whose own containerd lives under its
//! exec root; both runtimes are added with `--add-runtime` and chosen per
//! `docker run --runtime`. Every case runs against both and prints a table;
//! the test asserts runc's behaviour. The busybox image is the project's OCI
//! layout, turned into a docker-archive by skopeo and loaded with `docker
//! load`.

mod common;

use common::busybox_image;
use common::clients::{
    Runtime, Table, check_interactive, clean_up, leftovers, run_for, runtimes, text,
};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Debian's client (another `docker` may come first in PATH).
const DOCKER: &str = "/usr/bin/docker";
const IMAGE: &str = "busybox:latest";

struct Docker {
    dir: PathBuf,
    cgroup: String,
    daemon: Child,
}

impl Drop for Docker {
    fn drop(&mut self) {
        let o = run_for(30, self.cmd().args(["ps", "-aq"]));
        let ids: Vec<String> = text(&o.stdout).lines().map(String::from).collect();
        if !ids.is_empty() {
            let _ = run_for(60, self.cmd().args(["rm", "-f"]).args(&ids));
        }
        // SIGTERM: dockerd stops its containerd and unmounts its data root.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.daemon.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let t0 = Instant::now();
        while self.daemon.try_wait().ok().flatten().is_none() {
            if t0.elapsed() > Duration::from_secs(15) {
                let _ = self.daemon.kill();
                let _ = self.daemon.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        clean_up(&self.dir, &self.cgroup);
    }
}

impl Docker {
    /// A private dockerd, or None (with the reason printed) where it cannot
    /// start.
    fn start() -> Option<Docker> {
        assert!(
            Path::new("/usr/sbin/dockerd").exists() && Path::new(DOCKER).exists(),
            "docker.io is not installed: scripts/setup installs it"
        );
        let dir = std::env::temp_dir().join(format!("ocirun-docker-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cgroup = format!("ocirun-docker-{}", std::process::id());
        let ns = format!("ocirun-docker-{}", std::process::id());
        std::fs::write(dir.join("daemon.json"), "{}\n").unwrap();
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let mut cmd = Command::new("/usr/sbin/dockerd");
        cmd.arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--storage-driver",
                "vfs",
                "--containerd-namespace",
                &ns,
                "--containerd-plugins-namespace",
                &format!("{ns}-plugins"),
                "--cgroup-parent",
                &format!("/{cgroup}"),
            ]);
        for rt in runtimes() {
            cmd.arg("--add-runtime")
                .arg(format!("{}-test={}", rt.name, rt.path.display()));
        }
        let daemon = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut d = Docker {
            dir,
            cgroup,
            daemon,
        };
        let t0 = Instant::now();
        loop {
            if run_for(10, d.cmd().arg("version")).status.success() {
                break;
            }
            let gone = d.daemon.try_wait().ok().flatten().is_some();
            if gone || t0.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(d.dir.join("dockerd.log")).unwrap_or_default();
                let tail: Vec<_> = log.lines().rev().take(15).collect();
                eprintln!(
                    "SKIP: dockerd could not start here; its log ends with:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let img = busybox_image(&d.dir);
        let tar = d.dir.join("busybox.tar");
        let o = Command::new("skopeo")
            .arg("copy")
            .arg("-q")
            .arg(format!("oci:{}:latest", img.display()))
            .arg(format!("docker-archive:{}:{IMAGE}", tar.display()))
            .output()
            .unwrap();
        assert!(o.status.success(), "skopeo copy: {}", text(&o.stderr));
        let o = run_for(120, d.cmd().arg("load").arg("-i").arg(&tar));
        assert!(o.status.success(), "docker load: {}", text(&o.stderr));
        Some(d)
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(DOCKER);
        c.env("DOCKER_CONFIG", self.dir.join("client"))
            .arg("-H")
            .arg(format!("unix://{}", self.dir.join("docker.sock").display()));
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        run_for(60, self.cmd().args(args))
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "docker {args:?}: {:?}\n{}",
            o.status,
            text(&o.stderr)
        );
        text(&o.stdout)
    }

    /// `docker run -d` with `rt` of `cmd` (the image's `sh -c` entrypoint).
    fn start_ctr(&self, rt: &Runtime, name: &str, extra: &[&str], cmd: &str) {
        let runtime = format!("{}-test", rt.name);
        let mut a = vec![
            "run",
            "-d",
            "--network",
            "none",
            "--runtime",
            &runtime,
            "--name",
            name,
        ];
        a.extend_from_slice(extra);
        a.extend_from_slice(&[IMAGE, cmd]);
        self.ok(&a);
    }

    /// The runtimes' state dirs dockerd gives them under its exec root.
    fn runtime_state(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in std::fs::read_dir(self.dir.join("exec"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("runtime-"))
        {
            for ns in std::fs::read_dir(r.path()).into_iter().flatten().flatten() {
                for c in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                    let n = c.file_name().to_string_lossy().into_owned();
                    if !n.starts_with('.') {
                        out.push(format!("{}", c.path().display()));
                    }
                }
            }
        }
        out
    }

    /// What is left once every container is removed, apart from the
    /// daemons themselves and dockerd's bind mount of its data root.
    fn leftovers(&self) -> Vec<String> {
        let mut keep = vec![self.daemon.id() as i32];
        let pidfile = self.dir.join("exec/containerd/containerd.pid");
        if let Some(p) = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            keep.push(p);
        }
        let data = format!("mount {}", self.dir.join("data").display());
        let mut left = leftovers(&self.dir, &self.cgroup, &keep);
        left.retain(|l| l != &data);
        left.extend(self.runtime_state());
        left
    }
}

fn code(o: &Output) -> String {
    o.status
        .code()
        .map_or_else(|| format!("{:?}", o.status), |c| c.to_string())
}

/// One dockerd for all the cases (starting one takes seconds): exit codes of
/// run and exec, kill of a paused container, stop of a `--pid host` one,
/// `run -it` on a terminal, 20 containers at once, nothing left after.
#[test]
fn docker_run_exec_kill_stop() {
    let Some(d) = Docker::start() else {
        return;
    };
    let mut t = Table::default();
    for rt in runtimes() {
        let runtime = format!("{}-test", rt.name);
        let base = ["run", "--rm", "--network", "none", "--runtime", &runtime];
        let runs: [(&str, &[&str], &str); 4] = [
            ("docker run sh -c 'exit 0'", &[IMAGE, "exit 0"], "0"),
            ("docker run sh -c 'exit 1'", &[IMAGE, "exit 1"], "1"),
            (
                "docker run /etc/passwd (not executable)",
                &["--entrypoint", "/etc/passwd", IMAGE],
                "126",
            ),
            (
                "docker run nosuchcmd (not found)",
                &["--entrypoint", "nosuchcmd", IMAGE],
                "127",
            ),
        ];
        for (case, args, want) in runs {
            let mut a = base.to_vec();
            a.extend_from_slice(args);
            let o = d.run(&a);
            t.record(case, &rt, want, &code(&o), &text(&o.stderr));
        }

        let n = format!("exec-{}", rt.name);
        d.start_ctr(&rt, &n, &[], "sleep 1000");
        let execs: [(&str, &[&str], &str); 4] = [
            ("docker exec sh -c 'exit 0'", &["sh", "-c", "exit 0"], "0"),
            ("docker exec sh -c 'exit 1'", &["sh", "-c", "exit 1"], "1"),
            (
                "docker exec /etc/passwd (not executable)",
                &["/etc/passwd"],
                "126",
            ),
            // Docker 20.10 returns 126 for any exec that cannot start
            // (with runc too); the runtime's message tells them apart.
            ("docker exec nosuchcmd (not found)", &["nosuchcmd"], "126"),
        ];
        for (case, args, want) in execs {
            let mut a = vec!["exec", n.as_str()];
            a.extend_from_slice(args);
            let o = d.run(&a);
            t.record(case, &rt, want, &code(&o), &text(&o.stderr));
            if let Some(phrase) = match args[0] {
                "nosuchcmd" => Some("executable file not found in $PATH"),
                "/etc/passwd" => Some("permission denied"),
                _ => None,
            } {
                let all = format!("{}\n{}", text(&o.stdout), text(&o.stderr));
                t.record(
                    &format!("  message says {phrase:?}"),
                    &rt,
                    "true",
                    &all.contains(phrase).to_string(),
                    &all,
                );
            }
        }
        let _ = d.run(&["rm", "-f", &n]);

        let n = format!("paused-{}", rt.name);
        d.start_ctr(&rt, &n, &[], "sleep 1000");
        d.ok(&["pause", &n]);
        let o = d.run(&["kill", &n]);
        t.record(
            "docker kill of a paused container",
            &rt,
            "0",
            &code(&o),
            &text(&o.stderr),
        );
        let w = run_for(15, d.cmd().args(["wait", &n]));
        t.record(
            "  then its exit code (docker wait)",
            &rt,
            "137",
            &text(&w.stdout),
            &text(&w.stderr),
        );
        let _ = d.run(&["rm", "-f", &n]);

        // sh -c execs sleep, which is not PID 1 here: SIGTERM ends it.
        let n = format!("hoststop-{}", rt.name);
        d.start_ctr(&rt, &n, &["--pid", "host"], "sleep 1000");
        let t0 = Instant::now();
        let o = d.run(&["stop", "-t", "20", &n]);
        let took = t0.elapsed();
        t.record(
            "docker stop of a --pid host container",
            &rt,
            "0",
            &code(&o),
            &text(&o.stderr),
        );
        let st = d.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", &n]);
        t.record(
            "  then its state (SIGTERM, no SIGKILL)",
            &rt,
            "exited 143",
            &st,
            &format!("stop took {took:?}"),
        );
        let _ = d.run(&["rm", "-f", &n]);
    }
    for rt in runtimes() {
        docker_interactive(&d, &rt, &mut t);
        docker_twenty_in_parallel(&d, &rt, &mut t);
    }
    let left = d.leftovers();
    t.record(
        "nothing left after docker rm (both runtimes)",
        &runtimes()[0],
        "0",
        &left.len().to_string(),
        &format!("{left:#?}"),
    );
    t.check("Docker 20.10");
}

/// `docker run -it` on a terminal the test owns: stdin is a pty, typed
/// input reaches the container, its exit code comes back.
fn docker_interactive(d: &Docker, rt: &Runtime, t: &mut Table) {
    let runtime = format!("{}-test", rt.name);
    let mut cmd = d.cmd();
    cmd.args([
        "run",
        "-it",
        "--rm",
        "--network",
        "none",
        "--runtime",
        &runtime,
        IMAGE,
    ]);
    check_interactive("docker run -it", cmd, rt, t);
}

/// 20 `docker run -d` at once, waited for and removed.
fn docker_twenty_in_parallel(d: &Docker, rt: &Runtime, t: &mut Table) {
    let runtime = format!("{}-test", rt.name);
    let names: Vec<String> = (0..20).map(|i| format!("par-{}-{i}", rt.name)).collect();
    let kids: Vec<_> = names
        .iter()
        .map(|n| {
            d.cmd()
                .args([
                    "run",
                    "-d",
                    "--network",
                    "none",
                    "--runtime",
                    &runtime,
                    "--name",
                    n,
                    IMAGE,
                ])
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
        }
    }
    t.record(
        "20 x docker run -d in parallel: started",
        rt,
        "20",
        &started.to_string(),
        &errs,
    );
    let mut a = vec!["wait"];
    a.extend(names.iter().map(String::as_str));
    let o = d.run(&a);
    let zeros = text(&o.stdout).lines().filter(|l| l.trim() == "0").count();
    t.record(
        "  docker wait: exit codes 0",
        rt,
        "20",
        &zeros.to_string(),
        &text(&o.stderr),
    );
    let logs = d.run(&["logs", &names[0]]);
    t.record(
        "  output (docker logs)",
        rt,
        "done",
        &text(&logs.stdout),
        &text(&logs.stderr),
    );
    let mut a = vec!["rm", "-f"];
    a.extend(names.iter().map(String::as_str));
    let o = d.run(&a);
    t.record("  docker rm", rt, "0", &code(&o), &text(&o.stderr));
}
