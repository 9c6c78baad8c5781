//! The command line: runc-compatible names and flags (here), and what turns
//! them into the library's options (`exec.rs`, `control.rs`). containerd
//! (go-runc), podman/conmon and CRI-O call these exactly.
// Doc comments here are the --help text, in runc's notation ([:GID]).
#![allow(rustdoc::broken_intra_doc_links)]

pub mod control;
pub mod exec;
pub mod fast;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "ocirun",
    version,
    // A global flag given twice takes the last value, as runc's flag parser.
    args_override_self = true,
    about = "A low-level OCI container runtime (runc-compatible) with an OCI image unpacker"
)]
pub struct Cli {
    /// Directory for container state (tmpfs recommended; default /run/ocirun,
    /// or $XDG_RUNTIME_DIR/ocirun for an ordinary user)
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Write log records to this file (default: stderr only)
    #[arg(long, global = true, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Format of log records in --log
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,

    /// Log debug messages
    #[arg(long, global = true)]
    pub debug: bool,

    /// Use the systemd cgroup driver (cgroupsPath "slice:prefix:name")
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,

    /// Accepted for runc compatibility; checkpointing is not supported
    #[arg(long, global = true, hide = true, value_name = "PATH")]
    pub criu: Option<String>,

    /// Run without privilege: true, false or auto (rootless unless run as root)
    #[arg(long = "rootless", value_name = "VALUE")]
    pub rootless_mode: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container (it waits for `start` before running its process)
    Create(CreateArgs),
    /// Run the process of a created container
    Start { id: String },
    /// Print a container's state as JSON
    State { id: String },
    /// Send a signal to a container's init process (default SIGTERM)
    Kill {
        /// Send the signal to every process in the container
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container and everything it holds
    Delete {
        /// Kill the container first if it is still running
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create and start a container; without --detach wait for it and return its exit status
    Run(RunArgs),
    /// Run a new process in a running container
    Exec(ExecArgs),
    /// List containers under --root
    #[command(visible_alias = "ls")]
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        format: ListFormat,
        /// Print only the container ids
        #[arg(short, long)]
        quiet: bool,
    },
    /// Suspend every process in a container (cgroup freezer)
    Pause { id: String },
    /// Resume every process of a paused container
    Resume { id: String },
    /// Change the resource limits of a running container
    Update(UpdateArgs),
    /// Print a container's resource statistics and OOM events as JSON lines
    Events {
        /// Print the statistics once and exit
        #[arg(long)]
        stats: bool,
        /// How often to print statistics (Go duration: 5s, 500ms, 1m)
        #[arg(long, default_value = "5s", value_name = "DURATION")]
        interval: String,
        id: String,
    },
    /// List the processes running in a container
    Ps {
        #[arg(short, long, value_enum, default_value = "table")]
        format: ListFormat,
        id: String,
        /// Options for ps(1) in table format (default -ef)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Unpack an OCI image layout into a runtime bundle (rootfs/ + config.json)
    Unpack {
        /// OCI image layout directory, with an optional tag or digest
        #[arg(long, value_name = "DIR[:REF]")]
        image: String,
        /// Platform to pick from a multi-platform index (default: this host's)
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
        /// The bundle directory to create (must not exist or be empty)
        bundle: PathBuf,
    },
    /// Look at OCI images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Print what this build of ocirun supports (runtime spec features.json)
    Features,
    /// Write a default config.json
    Spec {
        /// Directory to write config.json into
        #[arg(short, long, value_name = "DIR")]
        bundle: Option<PathBuf>,
        /// Generate a configuration for a rootless container
        #[arg(long)]
        rootless: bool,
    },
}

/// `update`: runc's flags; --resources takes a runtime-spec
/// linux.resources JSON file, or `-` for standard input.
#[derive(Args, Debug, Default)]
pub struct UpdateArgs {
    /// linux.resources JSON to apply: a file, or - for standard input
    #[arg(short, long, value_name = "FILE")]
    pub resources: Option<PathBuf>,
    /// Block IO weight (10 to 1000)
    #[arg(long, value_name = "N")]
    pub blkio_weight: Option<u16>,
    /// CPU CFS period (microseconds)
    #[arg(long, value_name = "N")]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota (microseconds per period; -1 for none)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS burst (microseconds)
    #[arg(long, value_name = "N")]
    pub cpu_burst: Option<u64>,
    /// CPU realtime period (microseconds)
    #[arg(long, value_name = "N")]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime (microseconds)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(long, value_name = "N")]
    pub cpu_share: Option<u64>,
    /// CPUs to use (e.g. 0-2,4)
    #[arg(long, value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to use
    #[arg(long, value_name = "LIST")]
    pub cpuset_mems: Option<String>,
    /// Memory limit (bytes, or with a unit: 512m, 1g; -1 for none)
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory reservation (soft limit)
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit (-1 for unlimited swap)
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Obsolete in runc too; accepted and ignored
    #[arg(long, value_name = "SIZE", hide = true, allow_hyphen_values = true)]
    pub kernel_memory: Option<String>,
    /// Obsolete in runc too; accepted and ignored
    #[arg(long, value_name = "SIZE", hide = true, allow_hyphen_values = true)]
    pub kernel_memory_tcp: Option<String>,
    /// Maximum number of processes (-1 for none)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Intel RDT (not supported)
    #[arg(long, value_name = "SCHEMA", hide = true)]
    pub l3_cache_schema: Option<String>,
    /// Intel RDT (not supported)
    #[arg(long, value_name = "SCHEMA", hide = true)]
    pub mem_bw_schema: Option<String>,
    pub id: String,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Print the manifest, config and layers an image resolves to
    Inspect {
        /// OCI image layout directory, with an optional tag or digest
        #[arg(value_name = "DIR[:REF]")]
        image: String,
        /// Platform to pick from a multi-platform index (default: this host's)
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// Path to the bundle directory (default: the current directory)
    #[arg(short, long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Unix socket that receives the pty master when process.terminal is true
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Write the container's init pid to this file
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Use MS_MOVE and chroot instead of pivot_root (for ramdisk roots)
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility; no session keyring is created
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many extra fds (from fd 3 on) to the container process
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    pub id: String,
}

#[derive(Args, Debug, Clone)]
pub struct ExecArgs {
    /// A runtime-spec `process` JSON (as containerd and conmon send it)
    #[arg(short, long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Return once the process runs instead of waiting for it
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    pub tty: bool,
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// K=V, added to the container's environment
    #[arg(short, long, value_name = "K=V")]
    pub env: Vec<String>,
    /// UID[:GID]
    #[arg(short, long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    #[arg(short = 'g', long, value_name = "GID")]
    pub additional_gids: Vec<u32>,
    /// Add a capability (CAP_...)
    #[arg(short, long, value_name = "CAP")]
    pub cap: Vec<String>,
    #[arg(long)]
    pub no_new_privs: bool,
    /// Accepted for runc compatibility; AppArmor is not supported
    #[arg(long, value_name = "PROFILE")]
    pub apparmor: Option<String>,
    /// Accepted for runc compatibility; SELinux is not supported
    #[arg(long, value_name = "LABEL")]
    pub process_label: Option<String>,
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// Exec even into a paused container (the process starts frozen)
    #[arg(long)]
    pub ignore_paused: bool,
    /// Run in an existing sub-cgroup of the container: [CONTROLLER[,CONTROLLER]:]PATH
    #[arg(long, value_name = "[CONTROLLER:]PATH")]
    pub cgroup: Vec<String>,
    pub id: String,
    /// The command and its arguments (unless --process is given)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Return once the container is running instead of waiting for it
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits (foreground run only)
    #[arg(long)]
    pub keep: bool,
    /// Accepted for runc compatibility
    #[arg(long)]
    pub no_subreaper: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_flags_in_both_forms() {
        let c = Cli::try_parse_from([
            "ocirun",
            "--root=/tmp/r",
            "--log",
            "/tmp/l",
            "--log-format=json",
            "delete",
            "--force",
            "x",
        ])
        .unwrap();
        assert_eq!(c.root, Some(PathBuf::from("/tmp/r")));
        assert_eq!(c.log.as_deref(), Some(std::path::Path::new("/tmp/l")));
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(matches!(c.command, Command::Delete { force: true, .. }));
    }

    #[test]
    fn create_flags_like_containerd() {
        let c = Cli::try_parse_from([
            "ocirun",
            "--root",
            "/run/x",
            "--log",
            "/l",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/p",
            "--console-socket=/s",
            "--preserve-fds",
            "2",
            "id1",
        ])
        .unwrap();
        let Command::Create(a) = c.command else {
            panic!()
        };
        assert_eq!(a.bundle.as_deref(), Some(std::path::Path::new("/b")));
        assert_eq!(a.preserve_fds, 2);
        assert_eq!(a.id, "id1");
    }

    #[test]
    fn kill_defaults_to_sigterm() {
        let c = Cli::try_parse_from(["ocirun", "kill", "--all", "x"]).unwrap();
        let Command::Kill { all, signal, .. } = c.command else {
            panic!()
        };
        assert!(all);
        assert_eq!(signal, "SIGTERM");
    }
}
