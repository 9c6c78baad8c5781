//! Thin: parse the command line, set up logging, dispatch, map errors to
//! exit codes (0 ok, 1 error; `run` returns the container's exit status).
//! The entry point is C's `main` (sys/entry.rs), without std's runtime.

// The test harness (`cargo test --bins`) brings its own `main`; the binary
// has no unit tests, so `run` goes unused there.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code))]

#[cfg(not(test))]
#[path = "sys/entry.rs"]
#[allow(unsafe_code)]
mod entry;

use clap::Parser;
use ocirun::cli::{self, Cli, Command, CreateArgs, ImageCommand, ListFormat, LogFormat};
use ocirun::container::{self, CreateOpts, Global, RunOpts};
use ocirun::logging;

fn create_opts(a: CreateArgs) -> CreateOpts {
    CreateOpts {
        id: a.id,
        bundle: a.bundle.unwrap_or_else(|| ".".into()),
        console_socket: a.console_socket,
        pid_file: a.pid_file,
        no_pivot: a.no_pivot,
        preserve_fds: a.preserve_fds,
    }
}

/// `reexec`: the outcome of the re-exec `main` tried before parsing, if it
/// tried.
fn dispatch(cli: Cli, reexec: Option<ocirun::Result<()>>) -> ocirun::Result<i32> {
    let needs_root = !matches!(
        cli.command,
        Command::Spec { .. } | Command::Features | Command::Unpack { .. } | Command::Image(_)
    );
    let mode = ocirun::rootless::parse_mode(cli.rootless_mode.as_deref())?;
    let rootless = ocirun::rootless::detect(mode);
    let root = match cli.root {
        Some(r) => r,
        None if needs_root => ocirun::rootless::default_root()?,
        None => Default::default(),
    };
    let g = Global {
        root,
        systemd_cgroup: cli.systemd_cgroup,
        rootless,
        rootless_cgroups: ocirun::rootless::cgroups_rootless(mode, rootless),
    };
    if matches!(
        cli.command,
        Command::Create(_) | Command::Run(_) | Command::Exec(_)
    ) {
        // Before anything is forked into a container (CVE-2019-5736).
        match reexec {
            Some(r) => r?,
            None => ocirun::security::exe::run_from_read_only_binary()?,
        }
    }
    match cli.command {
        Command::Create(a) => container::create(&g, &create_opts(a)).map(|()| 0),
        Command::Start { id } => container::start(&g, &id).map(|()| 0),
        Command::State { id } => container::state(&g, &id).map(|s| {
            println!("{s}");
            0
        }),
        Command::Kill { all, id, signal } => container::kill(&g, &id, &signal, all).map(|()| 0),
        Command::Delete { force, id } => container::delete(&g, &id, force).map(|()| 0),
        Command::Run(r) => container::run(
            &g,
            &RunOpts {
                create: create_opts(r.create),
                detach: r.detach,
                keep: r.keep,
            },
        ),
        Command::Exec(a) => container::exec(&g, &cli::exec::opts(&a), |spec| {
            cli::exec::process(spec, &a)
        }),
        Command::Pause { id } => container::control::pause(&g, &id).map(|()| 0),
        Command::Resume { id } => container::control::resume(&g, &id).map(|()| 0),
        Command::Update(a) => {
            let delta = cli::control::resources(&a)?;
            container::control::update(&g, &a.id, delta).map(|()| 0)
        }
        Command::Events {
            stats,
            interval,
            id,
        } => {
            let interval = cli::control::parse_duration(&interval)?;
            container::control::events(&g, &id, stats, interval, &mut |e| println!("{e}"))
                .map(|()| 0)
        }
        Command::Ps {
            format,
            id,
            ps_args,
        } => container::control::ps(&g, &id, format == ListFormat::Json, &ps_args).map(|s| {
            print!("{s}");
            0
        }),
        Command::List { format, quiet } => container::list(&g, format == ListFormat::Json, quiet)
            .map(|s| {
                print!("{s}");
                0
            }),
        Command::Unpack {
            image,
            platform,
            bundle,
        } => {
            use std::io::IsTerminal;
            let done = ocirun::image::unpack(&ocirun::image::UnpackOpts {
                image: &image,
                platform: platform.as_deref(),
                bundle: &bundle,
                progress: std::io::stderr().is_terminal(),
                rootless: g.rootless,
            })?;
            for warning in &done.warnings {
                logging::warn(warning);
            }
            Ok(0)
        }
        Command::Image(ImageCommand::Inspect { image, platform }) => {
            ocirun::image::inspect(&image, platform.as_deref()).map(|i| {
                println!("{}", serde_json::to_string_pretty(&i).expect("serialises"));
                0
            })
        }
        Command::Features => ocirun::spec::features().map(|v| {
            println!("{}", serde_json::to_string_pretty(&v).expect("serialises"));
            0
        }),
        Command::Spec { bundle, rootless } => {
            container::write_spec(&bundle.unwrap_or_else(|| ".".into()), rootless).map(|()| 0)
        }
    }
}

/// Everything after the start-up (entry.rs); never returns.
fn run() -> ! {
    // The re-exec of `create`, `run` and `exec` (dispatch) made before the
    // command line is parsed: the process that re-executes would parse it
    // for nothing. An error is reported where dispatch would have met it.
    let reexec = ocirun::security::exe::may_enter_container(std::env::args_os())
        .then(ocirun::security::exe::run_from_read_only_binary);
    let cli = cli::fast::parse(std::env::args_os()).unwrap_or_else(Cli::parse);
    let format = match cli.log_format {
        LogFormat::Text => logging::Format::Text,
        LogFormat::Json => logging::Format::Json,
    };
    logging::init(cli.log.as_deref(), format, cli.debug);
    match dispatch(cli, reexec) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = e.to_string();
            logging::log("error", &msg);
            // "error" as in runc's `level=error msg=...`: scripts look for it.
            eprintln!("ocirun: error: {msg}");
            std::process::exit(1);
        }
    }
}
