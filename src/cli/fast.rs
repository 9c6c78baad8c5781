//! The command lines clients send on every container start and stop,
//! parsed without clap. Building clap's command tree costs each invocation
//! about 0.4 ms of CPU and 70 page faults (its heap and code), a few per
//! cent of a `run` and more of `start`, `state` or `delete`
//! (docs/performance.md). This parser takes only the plain forms
//! containerd, podman/conmon, CRI-O and Docker use for `create`, `run`,
//! `start`, `state`, `kill`, `delete` and `exec` (`--process`, or a
//! command after the id, as people and scripts type it), and gives up
//! (None) on anything else: an unknown or repeated-in-a-new-way flag, a
//! short flag cluster, `--`, a value that starts with `-`, help, version,
//! non-UTF-8. clap then parses the line as always, with its errors and
//! help. Where this parser answers, its answer is clap's (a test compares
//! them on many generated lines).

use std::ffi::OsString;
use std::path::PathBuf;

use super::{Cli, Command, CreateArgs, ExecArgs, LogFormat, RunArgs};

/// Which subcommand is being parsed.
#[derive(Clone, Copy, PartialEq)]
enum Sub {
    Create,
    Run,
    Start,
    State,
    Kill,
    Delete,
    Exec,
}

impl Sub {
    fn from(word: &str) -> Option<Sub> {
        Some(match word {
            "create" => Sub::Create,
            "run" => Sub::Run,
            "start" => Sub::Start,
            "state" => Sub::State,
            "kill" => Sub::Kill,
            "delete" => Sub::Delete,
            "exec" => Sub::Exec,
            _ => return None,
        })
    }
}

/// The flags a line may set; clap's defaults where it sets none.
#[derive(Default)]
struct Seen {
    root: Option<PathBuf>,
    log: Option<PathBuf>,
    log_format: Option<LogFormat>,
    debug: bool,
    systemd_cgroup: bool,
    criu: Option<String>,
    rootless: Option<String>,
    bundle: Option<PathBuf>,
    console_socket: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    no_pivot: bool,
    no_new_keyring: bool,
    preserve_fds: Option<u32>,
    detach: bool,
    keep: bool,
    no_subreaper: bool,
    all: bool,
    force: bool,
    process: Option<PathBuf>,
    tty: bool,
    positional: Vec<String>,
    command: Vec<String>,
}

/// Parses `args` (the program name first) when it is one of the plain
/// forms above; None sends the line to clap.
pub fn parse<I>(args: I) -> Option<Cli>
where
    I: IntoIterator<Item = OsString>,
{
    let args: Vec<String> = args
        .into_iter()
        .skip(1)
        .map(|a| a.into_string().ok())
        .collect::<Option<_>>()?;
    let mut seen = Seen::default();
    let mut sub = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        if !arg.starts_with('-') {
            match sub {
                None => sub = Some(Sub::from(arg)?),
                // exec's command: from its first word after the id, every
                // argument is the command's (clap's trailing arguments).
                Some(Sub::Exec) if seen.positional.len() == 1 => {
                    seen.command = args[i - 1..].to_vec();
                    break;
                }
                Some(_) => seen.positional.push(arg.to_owned()),
            }
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v)),
            _ => (arg, None),
        };
        // The flag's value: after `=`, or the next argument.
        let mut value = || -> Option<String> {
            let v = match inline {
                Some(v) => v.to_owned(),
                None => {
                    let v = args.get(i)?.clone();
                    i += 1;
                    v
                }
            };
            (!v.is_empty() && !v.starts_with('-')).then_some(v)
        };
        let flag_only = inline.is_none();
        match (sub, name) {
            // Global flags: before the subcommand or after it (--rootless
            // only before, as clap has it).
            (_, "--root") => seen.root = Some(value()?.into()),
            (_, "--log") => seen.log = Some(value()?.into()),
            (_, "--log-format") => {
                seen.log_format = Some(match value()?.as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => return None,
                })
            }
            (_, "--debug") if flag_only => seen.debug = true,
            (_, "--systemd-cgroup") if flag_only => seen.systemd_cgroup = true,
            (_, "--criu") => seen.criu = Some(value()?),
            (None, "--rootless") => seen.rootless = Some(value()?),
            (Some(Sub::Create | Sub::Run), "--bundle" | "-b") => {
                seen.bundle = Some(value()?.into())
            }
            (Some(Sub::Create | Sub::Run | Sub::Exec), "--console-socket") => {
                seen.console_socket = Some(value()?.into())
            }
            (Some(Sub::Create | Sub::Run | Sub::Exec), "--pid-file") => {
                seen.pid_file = Some(value()?.into())
            }
            (Some(Sub::Create | Sub::Run), "--no-pivot") if flag_only => seen.no_pivot = true,
            (Some(Sub::Create | Sub::Run), "--no-new-keyring") if flag_only => {
                seen.no_new_keyring = true
            }
            (Some(Sub::Create | Sub::Run), "--preserve-fds") => {
                seen.preserve_fds = Some(value()?.parse().ok()?)
            }
            (Some(Sub::Run | Sub::Exec), "--detach" | "-d") if flag_only => seen.detach = true,
            (Some(Sub::Run), "--keep") if flag_only => seen.keep = true,
            (Some(Sub::Run), "--no-subreaper") if flag_only => seen.no_subreaper = true,
            (Some(Sub::Kill), "--all" | "-a") if flag_only => seen.all = true,
            (Some(Sub::Delete), "--force" | "-f") if flag_only => seen.force = true,
            (Some(Sub::Exec), "--process" | "-p") => seen.process = Some(value()?.into()),
            (Some(Sub::Exec), "--tty" | "-t") if flag_only => seen.tty = true,
            _ => return None,
        }
    }
    let command = command(sub?, &mut seen)?;
    Some(Cli {
        root: seen.root,
        log: seen.log,
        log_format: seen.log_format.unwrap_or(LogFormat::Text),
        debug: seen.debug,
        systemd_cgroup: seen.systemd_cgroup,
        criu: seen.criu,
        rootless_mode: seen.rootless,
        command,
    })
}

/// The subcommand from what was seen, when its positional arguments are
/// complete.
fn command(sub: Sub, seen: &mut Seen) -> Option<Command> {
    let mut pos = std::mem::take(&mut seen.positional).into_iter();
    let id = pos.next()?;
    let signal = pos.next();
    if pos.next().is_some() || (signal.is_some() && sub != Sub::Kill) {
        return None;
    }
    let create = |seen: &mut Seen, id: String| CreateArgs {
        bundle: seen.bundle.take(),
        console_socket: seen.console_socket.take(),
        pid_file: seen.pid_file.take(),
        no_pivot: seen.no_pivot,
        no_new_keyring: seen.no_new_keyring,
        preserve_fds: seen.preserve_fds.unwrap_or(0),
        id,
    };
    Some(match sub {
        Sub::Create => Command::Create(create(seen, id)),
        Sub::Run => Command::Run(RunArgs {
            create: create(seen, id),
            detach: seen.detach,
            keep: seen.keep,
            no_subreaper: seen.no_subreaper,
        }),
        Sub::Start => Command::Start { id },
        Sub::State => Command::State { id },
        Sub::Kill => Command::Kill {
            all: seen.all,
            id,
            signal: signal.unwrap_or_else(|| "SIGTERM".into()),
        },
        Sub::Delete => Command::Delete {
            force: seen.force,
            id,
        },
        Sub::Exec => Command::Exec(ExecArgs {
            process: seen.process.take(),
            detach: seen.detach,
            pid_file: seen.pid_file.take(),
            console_socket: seen.console_socket.take(),
            tty: seen.tty,
            cwd: None,
            env: Vec::new(),
            user: None,
            additional_gids: Vec::new(),
            cap: Vec::new(),
            no_new_privs: false,
            apparmor: None,
            process_label: None,
            preserve_fds: 0,
            ignore_paused: false,
            cgroup: Vec::new(),
            id,
            command: std::mem::take(&mut seen.command),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The fast answer, if any, against clap's, both as their Debug text.
    fn both(line: &[&str]) -> (Option<String>, Result<String, String>) {
        let argv = || std::iter::once("ocirun").chain(line.iter().copied());
        let fast = parse(argv().map(OsString::from)).map(|c| format!("{c:?}"));
        let clap = Cli::try_parse_from(argv())
            .map(|c| format!("{c:?}"))
            .map_err(|e| e.kind().to_string());
        (fast, clap)
    }

    fn same(line: &[&str]) -> bool {
        match both(line) {
            (Some(fast), Ok(clap)) => {
                assert_eq!(fast, clap, "{line:?}");
                true
            }
            (Some(fast), Err(e)) => panic!("{line:?}: fast parsed {fast}, clap said {e}"),
            (None, _) => false,
        }
    }

    #[test]
    fn the_lines_clients_send_are_parsed_as_clap_parses_them() {
        let lines: &[&[&str]] = &[
            // containerd (go-runc)
            &[
                "--root",
                "/run/containerd/runc/k8s.io",
                "--log",
                "/run/x/log.json",
                "--log-format",
                "json",
                "create",
                "--bundle",
                "/run/b",
                "--pid-file",
                "/run/b/init.pid",
                "c1",
            ],
            &[
                "--root",
                "/r",
                "--log",
                "/l",
                "--log-format",
                "json",
                "start",
                "c1",
            ],
            &[
                "--root",
                "/r",
                "--log",
                "/l",
                "--log-format",
                "json",
                "state",
                "c1",
            ],
            &[
                "--root",
                "/r",
                "--log",
                "/l",
                "--log-format",
                "json",
                "kill",
                "c1",
                "9",
            ],
            &[
                "--root",
                "/r",
                "--log",
                "/l",
                "--log-format",
                "json",
                "kill",
                "--all",
                "c1",
                "15",
            ],
            &[
                "--root",
                "/r",
                "--log",
                "/l",
                "--log-format",
                "json",
                "delete",
                "c1",
            ],
            &[
                "--root",
                "/r",
                "--log",
                "/l",
                "--log-format",
                "json",
                "delete",
                "--force",
                "c1",
            ],
            &[
                "--root",
                "/r",
                "--log",
                "/l",
                "--log-format",
                "json",
                "exec",
                "--process",
                "/tmp/p.json",
                "--detach",
                "--pid-file",
                "/tmp/p.pid",
                "c1",
            ],
            &[
                "--root",
                "/r",
                "create",
                "--bundle",
                "/b",
                "--console-socket",
                "/s",
                "--pid-file",
                "/p",
                "--preserve-fds",
                "2",
                "c1",
            ],
            // podman/conmon, CRI-O
            &[
                "--systemd-cgroup",
                "--root=/run/runc",
                "create",
                "--bundle",
                "/b",
                "--pid-file",
                "/p",
                "--no-new-keyring",
                "c1",
            ],
            &[
                "--root",
                "/r",
                "exec",
                "--pid-file",
                "/p",
                "--process",
                "/x",
                "--detach",
                "--tty",
                "--console-socket",
                "/s",
                "c1",
            ],
            &["--root=/r", "--rootless=true", "state", "c1"],
            // runtime-tools, scripts
            &["run", "-b", "/b", "-d", "c1"],
            &["run", "--bundle=/b", "--keep", "--no-subreaper", "c1"],
            &["--debug", "--criu", "/c", "delete", "-f", "c1"],
            &["create", "c1", "--bundle", "/b"],
            &["delete", "c1", "--root", "/r"],
            &["kill", "-a", "c1"],
            &["exec", "-p", "/x", "-d", "c1"],
            &["exec", "c1", "sh"],
            &["exec", "-t", "c1", "sh", "-c", "true"],
            &["--root", "/r", "exec", "c1", "/bin/true"],
            &["exec", "c1", "-t", "sh", "--root", "/x", "--", "-d"],
        ];
        for line in lines {
            assert!(same(line), "not taken by the fast parser: {line:?}");
        }
    }

    #[test]
    fn everything_else_is_left_to_clap() {
        let lines: &[&[&str]] = &[
            &["--help"],
            &["create", "--help"],
            &["--version"],
            &["list"],
            &["ls"],
            &["create", "-dc1"],
            &["kill", "-9", "c1"],
            &["delete", "--", "c1"],
            &["exec", "c1", "--", "sh"],
            &["exec", "--user", "1", "c1", "sh"],
            &["create", "--bundle"],
            &["create", "--bundle=", "c1"],
            &["create", "--bundle", "--pid-file", "c1"],
            &["state"],
            &["state", "a", "b"],
            &["start", "--force", "c1"],
            &["create", "--rootless", "true", "c1"],
            &["--debug=true", "state", "c1"],
            &["--log-format", "xml", "state", "c1"],
            &["create", "--preserve-fds", "x", "c1"],
            &["bogus", "c1"],
        ];
        for line in lines {
            assert!(both(line).0.is_none(), "taken by the fast parser: {line:?}");
        }
    }

    /// Lines made of the pieces clients use, in many orders and counts:
    /// wherever the fast parser answers, clap answers the same.
    #[test]
    fn generated_lines_agree_with_clap() {
        let globals: &[&[&str]] = &[
            &["--root", "/r"],
            &["--root=/q"],
            &["--log", "/l"],
            &["--log-format", "json"],
            &["--log-format=text"],
            &["--debug"],
            &["--systemd-cgroup"],
            &["--criu", "/c"],
            &["--rootless", "auto"],
            &["c1"],
        ];
        let subs: &[&str] = &["create", "run", "start", "state", "kill", "delete", "exec"];
        let rest: &[&[&str]] = &[
            &["c1"],
            &["c1"],
            &["c1"],
            &["c2"],
            &["KILL"],
            &["--root", "/r"],
            &["--log=/l2"],
            &["--debug"],
            &["--rootless", "auto"],
            &["--bundle", "/b"],
            &["-b", "/b2"],
            &["--pid-file", "/p"],
            &["--console-socket=/s"],
            &["--no-pivot"],
            &["--no-new-keyring"],
            &["--preserve-fds", "3"],
            &["--detach"],
            &["-d"],
            &["--keep"],
            &["--no-subreaper"],
            &["--all"],
            &["-a"],
            &["--force"],
            &["-f"],
            &["--process", "/x"],
            &["-p", "/y"],
            &["--tty"],
            &["-t"],
            &["create"],
        ];
        // A small deterministic generator (xorshift), no extra dependency.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut taken = 0;
        let mut left = Vec::new();
        for _ in 0..4_000 {
            let mut line: Vec<&str> = Vec::new();
            for _ in 0..next(3) {
                line.extend_from_slice(globals[next(globals.len())]);
            }
            line.push(subs[next(subs.len())]);
            for _ in 0..next(6) {
                line.extend_from_slice(rest[next(rest.len())]);
            }
            if same(&line) {
                taken += 1;
            } else if both(&line).1.is_ok() {
                left.push(line);
            }
        }
        // The generator must reach the fast path often enough to mean something.
        assert!(taken > 150, "only {taken} generated lines were parsed fast");
        // Left to clap, of what it takes from these pieces: `--`, and
        // exec's lines where a flag it does not know here (--cap as `-c`,
        // or one of another subcommand) begins the command.
        for line in left {
            assert!(
                line.contains(&"--") || line.contains(&"exec"),
                "left to clap: {line:?}"
            );
        }
    }
}
