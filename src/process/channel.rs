//! The parent <-> child channel: one SOCK_SEQPACKET socketpair carrying typed
//! JSON messages, one per packet.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, send, socketpair};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub enum Msg {
    /// Parent -> child: the child is in its cgroup; go on.
    Go,
    /// Child -> parent: I am in a new user namespace; write my id maps.
    MapRequest,
    /// Parent -> child: the id maps are written.
    MapsDone,
    /// Intermediate child -> parent: the container init's host pid.
    Pid(i32),
    /// Init -> parent: mounts are done, run the prestart and createRuntime hooks.
    RuntimeHooks,
    /// Parent -> init: those hooks succeeded.
    HooksDone,
    /// Init -> parent: set up and waiting for `start`.
    Ready,
    /// Child -> parent: setup failed.
    Error(String),
}

pub struct Channel(OwnedFd);

pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ctx(Error::Process, || "socketpair for the init channel")?;
    Ok((Channel(a), Channel(b)))
}

impl Channel {
    pub fn send(&self, m: &Msg) -> Result<()> {
        let data = serde_json::to_vec(m).expect("message serialises");
        send(self.0.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL)
            .ctx(Error::Process, || "send on the init channel")?;
        Ok(())
    }

    /// Receives one message; EOF (the other side exited) is an error.
    pub fn recv(&self) -> Result<Msg> {
        self.recv_or_eof()?.ok_or_else(|| {
            Error::Process("the container's init exited during setup without a word".into())
        })
    }

    /// Receives one message, or None once every process holding the other
    /// end has closed it (exited, or exec'd: the socket is close-on-exec).
    pub fn recv_or_eof(&self) -> Result<Option<Msg>> {
        let mut buf = Vec::with_capacity(64 * 1024);
        match crate::sys::fd::recv_into(self.0.as_fd(), &mut buf) {
            Ok(0) => Ok(None),
            Ok(_) => serde_json::from_slice(&buf)
                .map(Some)
                .map_err(|e| Error::Process(format!("bad message on the init channel: {e}"))),
            Err(e) => Err(e).ctx(Error::Process, || "receive on the init channel"),
        }
    }

    /// Waits for one specific message.
    pub fn expect(&self, want: Msg) -> Result<()> {
        match self.recv()? {
            m if m == want => Ok(()),
            Msg::Error(e) => Err(Error::Process(e)),
            m => Err(Error::Process(format!(
                "expected {want:?} on the init channel, got {m:?}"
            ))),
        }
    }
}

/// Makes a panic in a child one line on the channel (and in `also`, the
/// result fifo `start` reads) before the process aborts: the waiting side
/// reports it like any other error.
pub fn report_panics(ch: &Channel, also: Option<&OwnedFd>) {
    let fd = ch.0.as_raw_fd();
    let also = also.map(|f| f.as_raw_fd());
    std::panic::set_hook(Box::new(move |info| {
        let msg = format!("internal error: {info}").replace('\n', ": ");
        let data = serde_json::to_vec(&Msg::Error(msg.clone())).unwrap_or_default();
        let _ = send(fd, &data, MsgFlags::MSG_NOSIGNAL);
        if let Some(r) = also {
            crate::sys::fd::write_raw(r, msg.as_bytes());
        }
        eprintln!("ocirun: {msg}");
    }));
}
