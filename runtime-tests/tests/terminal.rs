//! Terminals without a console socket: a foreground `run` or `exec` with
//! process.terminal relays between the caller's terminal and the container's
//! pty (raw mode, window size changes), as `runc run` does. The caller's
//! terminal here is a pty the test owns.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::pty::{OpenptyResult, Winsize, openpty};
use nix::sys::termios::{LocalFlags, tcgetattr};
use runtime_tests::Ctr;

/// The test's terminal: the master it drives, the slave the runtime gets.
fn terminal(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    let ws = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let OpenptyResult { master, slave } = openpty(Some(&ws), None).unwrap();
    (master, slave)
}

/// Spawns the runtime with all three stdio on `slave`.
fn spawn_on(mut cmd: std::process::Command, slave: &OwnedFd) -> Child {
    let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
    cmd.stdin(io(slave))
        .stdout(io(slave))
        .stderr(io(slave))
        .spawn()
        .unwrap()
}

/// Reads the master until `marker` shows up; panics with what it read after
/// 20 s without it.
fn expect(master: &mut File, seen: &mut String, marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let start = seen.len();
    let mut buf = [0u8; 1024];
    while !seen[start..].contains(marker) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {marker:?} on the terminal; got {seen:?}"
        );
        let mut p = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(left.as_millis().min(1000) as i32).unwrap();
        if poll(&mut p, ms).unwrap() == 0 {
            continue;
        }
        match master.read(&mut buf) {
            Ok(0) | Err(_) => panic!("terminal closed before {marker:?}; got {seen:?}"),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
}

fn wait_code(child: &mut Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the runtime did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn run_relays_a_terminal_with_raw_mode_and_window_size() {
    let mut c = Ctr::new("tty-run", &["sh"]);
    c.config["process"]["terminal"] = true.into();
    c.write_config();
    let (master, slave) = terminal(40, 100);
    let mut cmd = c.cmd();
    cmd.args(["run", "--bundle"]).arg(c.bundle()).arg(&c.id);
    let mut child = spawn_on(cmd, &slave);
    let mut m = File::from(master);
    let mut seen = String::new();
    m.write_all(b"tty; stty size; echo ok-$((6*7))\n").unwrap();
    expect(&mut m, &mut seen, "ok-42");
    assert!(seen.contains("/dev/pts/"), "{seen:?}");
    assert!(
        seen.contains("40 100"),
        "initial size not applied: {seen:?}"
    );
    // While the relay runs our terminal is raw: no echo, no line editing.
    let t = tcgetattr(&slave).unwrap();
    assert!(
        !t.local_flags.contains(LocalFlags::ICANON) && !t.local_flags.contains(LocalFlags::ECHO),
        "the caller's terminal is not in raw mode: {:?}",
        t.local_flags
    );
    // A window size change on our terminal reaches the container's pty.
    runtime_tests::sys::set_winsize(&m, 50, 120).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGWINCH,
    )
    .unwrap();
    // The signal is handled asynchronously: ask until the new size shows.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        m.write_all(b"stty size\n").unwrap();
        let mark = seen.len();
        expect(&mut m, &mut seen, "\n");
        std::thread::sleep(Duration::from_millis(100));
        let mut more = [0u8; 512];
        let mut p = [PollFd::new(m.as_fd(), PollFlags::POLLIN)];
        if poll(&mut p, PollTimeout::from(200u16)).unwrap() > 0 {
            let n = m.read(&mut more).unwrap();
            seen.push_str(&String::from_utf8_lossy(&more[..n]));
        }
        if seen[mark..].contains("50 120") {
            break;
        }
        assert!(Instant::now() < deadline, "resize never seen: {seen:?}");
    }
    // Ctrl-C goes to the container's foreground process as a byte, not to
    // the runtime: the shell survives it.
    m.write_all(b"sleep 30\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    m.write_all(&[3]).unwrap();
    m.write_all(b"echo alive-$((1+1))\n").unwrap();
    expect(&mut m, &mut seen, "alive-2");
    m.write_all(b"exit 3\n").unwrap();
    assert_eq!(wait_code(&mut child), 3, "{seen:?}");
    // Our terminal is back to how it was.
    let t = tcgetattr(&slave).unwrap();
    assert!(
        t.local_flags.contains(LocalFlags::ICANON) && t.local_flags.contains(LocalFlags::ECHO),
        "the caller's terminal was not restored: {:?}",
        t.local_flags
    );
    c.assert_no_leftovers();
}

/// With no terminal of its own (stdio are pipes) the runtime still relays
/// the container's pty. runc 1.1 fails this one: it opens /dev/tty and needs a
/// controlling terminal ("open /dev/tty: no such device or address").
#[test]
fn run_with_a_terminal_and_piped_stdio_relays_output() {
    let mut c = Ctr::new("tty-pipe", &["sh", "-c", "tty; echo out-$((2+3)); exit 4"]);
    c.config["process"]["terminal"] = true.into();
    c.write_config();
    let o = c
        .cmd()
        .args(["run", "--bundle"])
        .arg(c.bundle())
        .arg(&c.id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("out-5"), "{out:?}");
    c.assert_no_leftovers();
}

#[test]
fn exec_tty_relays_a_terminal() {
    let c = Ctr::new("tty-exec", &["sleep", "100"]);
    c.create_ok();
    c.op_ok(&["start", &c.id]);
    let (master, slave) = terminal(33, 77);
    let mut cmd = c.cmd();
    cmd.args(["exec", "--tty", &c.id, "sh"]);
    let mut child = spawn_on(cmd, &slave);
    let mut m = File::from(master);
    let mut seen = String::new();
    m.write_all(b"tty; stty size; echo pid-of-init-$(cat /proc/1/comm)\n")
        .unwrap();
    expect(&mut m, &mut seen, "pid-of-init-sleep");
    assert!(seen.contains("/dev/pts/"), "{seen:?}");
    assert!(seen.contains("33 77"), "{seen:?}");
    m.write_all(b"exit 6\n").unwrap();
    assert_eq!(wait_code(&mut child), 6, "{seen:?}");
    let t = tcgetattr(&slave).unwrap();
    assert!(t.local_flags.contains(LocalFlags::ICANON), "not restored");
    c.op_ok(&["delete", "--force", &c.id]);
    c.assert_no_leftovers();
}
