//! A blocking client of systemd's manager (`org.freedesktop.systemd1`) on
//! the system bus, or the user's bus when rootless: start a transient unit,
//! set its properties, stop it, wait for each job's `JobRemoved` signal.
//!
//! Over libdbus (the `dbus` crate): it starts no threads, so nothing runs
//! behind ocirun's back when it forks, and a connection is one socket that
//! is closed on drop (and close-on-exec). Messages that arrive while a
//! method call waits for its reply (signals) stay queued for the next read,
//! so a job's `JobRemoved` cannot be missed. Without the `systemd` cargo
//! feature every call is a clear error.

use super::Prop;
use crate::error::{Error, Result};

/// Whether this build has the systemd cgroup driver.
pub const BUILT_IN: bool = cfg!(feature = "systemd");

#[cfg(feature = "systemd")]
pub use imp::Bus;

#[cfg(not(feature = "systemd"))]
pub use stub::Bus;

fn not_built() -> Error {
    Error::Cgroup(
        "this ocirun was built without the systemd cgroup driver (cargo feature \"systemd\")"
            .into(),
    )
}

/// Fails unless the driver is built in.
pub fn check_built_in() -> Result<()> {
    if BUILT_IN { Ok(()) } else { Err(not_built()) }
}

#[cfg(not(feature = "systemd"))]
mod stub {
    use super::*;

    pub struct Bus;

    impl Bus {
        pub fn connect(_user: bool) -> Result<Bus> {
            Err(not_built())
        }
        pub fn version(&self) -> Result<u32> {
            Err(not_built())
        }
        pub fn manager_control_group(&self) -> Result<String> {
            Err(not_built())
        }
        pub fn start_transient_unit(&self, _unit: &str, _props: &[Prop]) -> Result<()> {
            Err(not_built())
        }
        pub fn set_unit_properties(&self, _unit: &str, _props: &[Prop]) -> Result<()> {
            Err(not_built())
        }
        pub fn stop_unit(&self, _unit: &str) -> Result<()> {
            Err(not_built())
        }
    }
}

#[cfg(feature = "systemd")]
mod imp {
    use std::time::{Duration, Instant};

    use dbus::Message;
    use dbus::arg::{RefArg, Variant};
    use dbus::channel::{BusType, Channel};
    use dbus::message::MessageType;

    use super::super::Value;
    use super::*;

    const DEST: &str = "org.freedesktop.systemd1";
    const PATH: &str = "/org/freedesktop/systemd1";
    const MANAGER: &str = "org.freedesktop.systemd1.Manager";
    /// How long a call or a job may take (runc's 30 s).
    const TIMEOUT: Duration = Duration::from_secs(30);

    /// One connection to a systemd manager.
    pub struct Bus {
        ch: Channel,
        /// What we are connected to, for messages.
        what: &'static str,
    }

    /// A D-Bus error as one line: systemd's message without its period,
    /// then the error name.
    fn text(e: &dbus::Error) -> String {
        let msg = e.message().unwrap_or("no message").trim_end_matches('.');
        match e.name() {
            Some(n) => format!("{msg} ({n})"),
            None => msg.to_string(),
        }
    }

    fn is(e: &dbus::Error, name: &str) -> bool {
        e.name() == Some(name)
    }

    fn variant(v: &Value) -> Variant<Box<dyn RefArg>> {
        Variant(match v {
            Value::Bool(b) => Box::new(*b),
            Value::Str(s) => Box::new(s.clone()),
            Value::U64(n) => Box::new(*n),
            Value::U32s(v) => Box::new(v.clone()),
            Value::Bytes(v) => Box::new(v.clone()),
            Value::StrPairs(v) => Box::new(v.clone()),
            Value::DevU64s(v) => Box::new(v.clone()),
        })
    }

    /// `a(sv)`: properties as D-Bus carries them.
    type Props<'a> = Vec<(&'a str, Variant<Box<dyn RefArg>>)>;

    fn props(p: &[Prop]) -> Props<'_> {
        p.iter().map(|(n, v)| (*n, variant(v))).collect()
    }

    /// The user's bus: `$DBUS_SESSION_BUS_ADDRESS`, else
    /// `$XDG_RUNTIME_DIR/bus` (as runc).
    fn user_bus_address() -> Result<String> {
        if let Ok(a) = std::env::var("DBUS_SESSION_BUS_ADDRESS")
            && !a.is_empty()
        {
            return Ok(a);
        }
        if let Ok(d) = std::env::var("XDG_RUNTIME_DIR") {
            let p = std::path::Path::new(&d).join("bus");
            if p.exists() {
                return Ok(format!("unix:path={}", p.display()));
            }
        }
        Err(Error::Cgroup(
            "no user bus for the rootless systemd cgroup driver: DBUS_SESSION_BUS_ADDRESS is unset and $XDG_RUNTIME_DIR/bus does not exist"
                .into(),
        ))
    }

    impl Bus {
        /// Connects to the system bus (root: systemd's private socket when
        /// there is no bus daemon, as go-systemd does), or the user's bus,
        /// and subscribes to the manager's job signals.
        pub fn connect(user: bool) -> Result<Bus> {
            let (ch, what, direct) = if user {
                let addr = user_bus_address()?;
                let mut ch = Channel::open_private(&addr).map_err(|e| {
                    Error::Cgroup(format!("connect to the user bus {addr}: {}", text(&e)))
                })?;
                ch.register().map_err(|e| {
                    Error::Cgroup(format!("register on the user bus {addr}: {}", text(&e)))
                })?;
                (ch, "the user's systemd", false)
            } else {
                match Channel::get_private(BusType::System) {
                    Ok(ch) => (ch, "systemd", false),
                    Err(e) => {
                        let private = std::path::Path::new("/run/systemd/private");
                        if !(nix::unistd::geteuid().is_root() && private.exists()) {
                            return Err(Error::Cgroup(format!(
                                "connect to the system bus for systemd: {}",
                                text(&e)
                            )));
                        }
                        let ch = Channel::open_private("unix:path=/run/systemd/private").map_err(
                            |e| {
                                Error::Cgroup(format!(
                                    "connect to systemd at /run/systemd/private: {}",
                                    text(&e)
                                ))
                            },
                        )?;
                        (ch, "systemd", true)
                    }
                }
            };
            let bus = Bus { ch, what };
            if !direct {
                let rule = format!(
                    "type='signal',sender='{DEST}',path='{PATH}',interface='{MANAGER}',member='JobRemoved'"
                );
                let m = Message::new_method_call(
                    "org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus",
                    "AddMatch",
                )
                .expect("valid names")
                .append1(rule);
                bus.ch.send_with_reply_and_block(m, TIMEOUT).map_err(|e| {
                    Error::Cgroup(format!("subscribe to systemd's job signals: {}", text(&e)))
                })?;
            }
            // systemd sends job signals on a bus only once a client
            // subscribed; a direct connection gets them all (and does not
            // answer Subscribe).
            if !direct {
                bus.call("Subscribe", |m| m)
                    .map_err(|e| Error::Cgroup(format!("subscribe to {what}: {}", text(&e))))?;
            }
            Ok(bus)
        }

        fn call(
            &self,
            method: &str,
            build: impl FnOnce(Message) -> Message,
        ) -> std::result::Result<Message, dbus::Error> {
            let m = Message::new_method_call(DEST, PATH, MANAGER, method).expect("valid names");
            self.ch.send_with_reply_and_block(build(m), TIMEOUT)
        }

        fn manager_property(&self, name: &str) -> Result<String> {
            let m = Message::new_method_call(DEST, PATH, "org.freedesktop.DBus.Properties", "Get")
                .expect("valid names")
                .append2(MANAGER, name);
            let reply = self.ch.send_with_reply_and_block(m, TIMEOUT).map_err(|e| {
                Error::Cgroup(format!("read {} property {name}: {}", self.what, text(&e)))
            })?;
            let v: Variant<String> = reply
                .read1()
                .map_err(|e| Error::Cgroup(format!("read {} property {name}: {e}", self.what)))?;
            Ok(v.0)
        }

        /// systemd's version number (`252` of "252.38-1~deb12u1").
        pub fn version(&self) -> Result<u32> {
            let v = self.manager_property("Version")?;
            let digits: String = v
                .trim_start_matches(['"', 'v'])
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().map_err(|_| {
                Error::Cgroup(format!(
                    "systemd version {v:?} does not start with a number"
                ))
            })
        }

        /// The manager's own cgroup (a user manager's
        /// `/user.slice/user-1000.slice/user@1000.service`).
        pub fn manager_control_group(&self) -> Result<String> {
            self.manager_property("ControlGroup")
        }

        /// `StartTransientUnit` in mode "replace", then waits for its job.
        /// A unit of that name left failed is reset and the start tried
        /// once more (as runc); a job that does not end "done" is an error
        /// and the failed unit is reset, so nothing is left.
        pub fn start_transient_unit(&self, unit: &str, p: &[Prop]) -> Result<()> {
            let aux: Vec<(&str, Props)> = Vec::new();
            let start = || {
                self.call("StartTransientUnit", |m| {
                    m.append3(unit, "replace", props(p)).append1(&aux)
                })
            };
            let reply = match start() {
                Err(e) if is(&e, "org.freedesktop.systemd1.UnitExists") => {
                    self.reset_failed(unit);
                    start()
                }
                r => r,
            }
            .map_err(|e| {
                Error::Cgroup(format!(
                    "{} could not start unit {unit}: {}",
                    self.what,
                    text(&e)
                ))
            })?;
            let job = job_of(&reply, unit)?;
            let result = self.wait_job(&job, unit, "start")?;
            if result != "done" {
                self.reset_failed(unit);
                return Err(Error::Cgroup(format!(
                    "{} could not start unit {unit}: its job ended {result:?}",
                    self.what
                )));
            }
            Ok(())
        }

        /// `SetUnitProperties` (runtime, not persistent).
        pub fn set_unit_properties(&self, unit: &str, p: &[Prop]) -> Result<()> {
            self.call("SetUnitProperties", |m| m.append3(unit, true, props(p)))
                .map(drop)
                .map_err(|e| {
                    Error::Cgroup(format!(
                        "{} could not set properties of unit {unit}: {}",
                        self.what,
                        text(&e)
                    ))
                })
        }

        /// `StopUnit` and waits for its job; a unit that does not exist (any
        /// more) is stopped. A failed unit is reset so systemd forgets it.
        pub fn stop_unit(&self, unit: &str) -> Result<()> {
            let reply = match self.call("StopUnit", |m| m.append2(unit, "replace")) {
                Ok(r) => r,
                Err(e) if is(&e, "org.freedesktop.systemd1.NoSuchUnit") => return Ok(()),
                Err(e) => {
                    return Err(Error::Cgroup(format!(
                        "{} could not stop unit {unit}: {}",
                        self.what,
                        text(&e)
                    )));
                }
            };
            let job = job_of(&reply, unit)?;
            let result = self.wait_job(&job, unit, "stop")?;
            if result != "done" {
                crate::logging::warn(&format!("stopping unit {unit}: its job ended {result:?}"));
            }
            self.reset_failed(unit);
            Ok(())
        }

        fn reset_failed(&self, unit: &str) {
            let _ = self.call("ResetFailedUnit", |m| m.append1(unit));
        }

        /// Reads messages until the manager's `JobRemoved` for `job`;
        /// returns its result ("done", "failed", "canceled", ...).
        fn wait_job(&self, job: &str, unit: &str, what: &str) -> Result<String> {
            let deadline = Instant::now() + TIMEOUT;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::Cgroup(format!(
                        "timed out after {}s waiting for {} to {what} unit {unit} (job {job})",
                        TIMEOUT.as_secs(),
                        self.what
                    )));
                }
                let msg = self.ch.blocking_pop_message(left).map_err(|e| {
                    Error::Cgroup(format!(
                        "waiting for {} to {what} unit {unit}: {}",
                        self.what,
                        text(&e)
                    ))
                })?;
                let Some(msg) = msg else { continue };
                if msg.msg_type() != MessageType::Signal
                    || msg.interface().as_deref() != Some(MANAGER)
                    || msg.member().as_deref() != Some("JobRemoved")
                {
                    continue;
                }
                let Ok((_, path, _, result)) = msg.read4::<u32, dbus::Path, String, String>()
                else {
                    continue;
                };
                if &*path == job {
                    return Ok(result);
                }
            }
        }
    }

    fn job_of(reply: &Message, unit: &str) -> Result<String> {
        reply
            .read1::<dbus::Path>()
            .map(|p| p.to_string())
            .map_err(|e| Error::Cgroup(format!("systemd's reply for unit {unit} has no job: {e}")))
    }
}
