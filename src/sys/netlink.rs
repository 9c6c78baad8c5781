//! A minimal rtnetlink client: the five requests `linux.netDevices` needs
//! (list links, list addresses, move + rename a link into another network
//! namespace, add an address, set a link up), encoded by hand. Pure byte
//! work over a NETLINK_ROUTE socket from nix; no `unsafe` here.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, sendto, socket,
};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;
const IFLA_IFNAME: u16 = 3;
const IFLA_NET_NS_FD: u16 = 28;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_FLAGS: u16 = 8;
const IFA_F_PERMANENT: u32 = 0x80;
const RT_SCOPE_UNIVERSE: u8 = 0;
const IFF_UP: u32 = 0x1;

/// One address of a link, as RTM_GETADDR reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Addr {
    pub family: u8,
    pub prefixlen: u8,
    pub scope: u8,
    /// ifa_flags, widened by the IFA_FLAGS attribute when present.
    pub flags: u32,
    pub index: u32,
    /// IFA_ADDRESS, IFA_LOCAL and IFA_BROADCAST, as the kernel gave them.
    pub attrs: Vec<(u16, Vec<u8>)>,
}

impl Addr {
    /// A permanent address of global scope: what the runtime spec asks to
    /// keep when a device moves.
    pub fn is_permanent_global(&self) -> bool {
        self.scope == RT_SCOPE_UNIVERSE && self.flags & IFA_F_PERMANENT != 0
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn push_attr(buf: &mut Vec<u8>, typ: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&typ.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(align4(buf.len()), 0);
}

/// A request: header, fixed part (`body`), attributes.
fn message(typ: u16, flags: u16, seq: u32, body: &[u8], attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut buf = vec![0u8; 16];
    buf.extend_from_slice(body);
    buf.resize(align4(buf.len()), 0);
    for (t, d) in attrs {
        push_attr(&mut buf, *t, d);
    }
    let len = buf.len() as u32;
    buf[0..4].copy_from_slice(&len.to_ne_bytes());
    buf[4..6].copy_from_slice(&typ.to_ne_bytes());
    buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
    buf[8..12].copy_from_slice(&seq.to_ne_bytes());
    buf
}

/// struct ifinfomsg.
fn ifinfomsg(index: i32, flags: u32, change: u32) -> Vec<u8> {
    let mut b = vec![0u8; 4];
    b.extend_from_slice(&index.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&change.to_ne_bytes());
    b
}

/// struct ifaddrmsg.
fn ifaddrmsg(family: u8, prefixlen: u8, flags: u8, scope: u8, index: u32) -> Vec<u8> {
    let mut b = vec![family, prefixlen, flags, scope];
    b.extend_from_slice(&index.to_ne_bytes());
    b
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The attributes of a message payload after its fixed part.
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while let (Some(len), Some(typ)) = (u16_at(b, 0), u16_at(b, 2)) {
        let len = len as usize;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((typ & 0x3fff, &b[4..len]));
        b = &b[align4(len).min(b.len())..];
    }
    out
}

/// One message of a datagram: type, sequence number, payload.
type Part<'a> = (u16, u32, &'a [u8]);

/// The messages of one datagram.
fn split(mut b: &[u8]) -> Result<Vec<Part<'_>>, Errno> {
    let mut out = Vec::new();
    while b.len() >= 16 {
        let len = u32_at(b, 0).ok_or(Errno::EBADMSG)? as usize;
        let typ = u16_at(b, 4).ok_or(Errno::EBADMSG)?;
        let seq = u32_at(b, 8).ok_or(Errno::EBADMSG)?;
        if len < 16 || len > b.len() {
            return Err(Errno::EBADMSG);
        }
        out.push((typ, seq, &b[16..len]));
        b = &b[align4(len).min(b.len())..];
    }
    Ok(out)
}

fn parse_link(p: &[u8]) -> Option<(i32, String)> {
    let index = u32_at(p, 4)? as i32;
    let name = attrs(p.get(16..)?)
        .into_iter()
        .find(|(t, _)| *t == IFLA_IFNAME)
        .map(|(_, d)| String::from_utf8_lossy(d.split(|c| *c == 0).next().unwrap_or(d)).into())?;
    Some((index, name))
}

fn parse_addr(p: &[u8]) -> Option<Addr> {
    let mut a = Addr {
        family: *p.first()?,
        prefixlen: *p.get(1)?,
        flags: u32::from(*p.get(2)?),
        scope: *p.get(3)?,
        index: u32_at(p, 4)?,
        attrs: Vec::new(),
    };
    for (t, d) in attrs(p.get(8..)?) {
        match t {
            IFA_FLAGS => a.flags = u32_at(d, 0)?,
            IFA_ADDRESS | IFA_LOCAL | IFA_BROADCAST => a.attrs.push((t, d.to_vec())),
            _ => {}
        }
    }
    Some(a)
}

/// A NETLINK_ROUTE socket, bound to the network namespace of the thread
/// that made it.
pub(crate) struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

impl Rtnl {
    pub fn open() -> Result<Rtnl, Errno> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        Ok(Rtnl { fd, seq: 0 })
    }

    fn send(
        &mut self,
        typ: u16,
        flags: u16,
        body: &[u8],
        at: &[(u16, Vec<u8>)],
    ) -> Result<u32, Errno> {
        self.seq += 1;
        let msg = message(typ, flags, self.seq, body, at);
        sendto(
            self.fd.as_raw_fd(),
            &msg,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )?;
        Ok(self.seq)
    }

    /// Reads replies to `seq` until the ACK (or the end of a dump), handing
    /// every data message to `each`.
    fn replies(&mut self, seq: u32, mut each: impl FnMut(u16, &[u8])) -> Result<(), Errno> {
        let mut buf = Vec::with_capacity(64 * 1024);
        loop {
            let n = super::fd::recv_into(self.fd.as_fd(), &mut buf)?;
            for (typ, _, payload) in split(&buf[..n])?.into_iter().filter(|(_, s, _)| *s == seq) {
                match typ {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = u32_at(payload, 0).ok_or(Errno::EBADMSG)? as i32;
                        return if code == 0 {
                            Ok(())
                        } else {
                            Err(Errno::from_raw(-code))
                        };
                    }
                    t => each(t, payload),
                }
            }
        }
    }

    /// Every link: (ifindex, name).
    pub fn links(&mut self) -> Result<Vec<(i32, String)>, Errno> {
        let seq = self.send(RTM_GETLINK, NLM_F_DUMP, &ifinfomsg(0, 0, 0), &[])?;
        let mut out = Vec::new();
        self.replies(seq, |t, p| {
            if t == RTM_NEWLINK
                && let Some(link) = parse_link(p)
            {
                out.push(link);
            }
        })?;
        Ok(out)
    }

    /// Every address of link `index`.
    pub fn addrs(&mut self, index: u32) -> Result<Vec<Addr>, Errno> {
        let seq = self.send(RTM_GETADDR, NLM_F_DUMP, &ifaddrmsg(0, 0, 0, 0, 0), &[])?;
        let mut out = Vec::new();
        self.replies(seq, |t, p| {
            if t == RTM_NEWADDR
                && let Some(a) = parse_addr(p)
                && a.index == index
            {
                out.push(a);
            }
        })?;
        Ok(out)
    }

    /// Moves link `index` into the network namespace `netns` under `name`
    /// (which may hold a `%d` template).
    pub fn move_link(
        &mut self,
        index: i32,
        netns: BorrowedFd<'_>,
        name: &str,
    ) -> Result<(), Errno> {
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        let at = [
            (
                IFLA_NET_NS_FD,
                (netns.as_raw_fd() as u32).to_ne_bytes().to_vec(),
            ),
            (IFLA_IFNAME, n),
        ];
        let seq = self.send(RTM_NEWLINK, NLM_F_ACK, &ifinfomsg(index, 0, 0), &at)?;
        self.replies(seq, |_, _| {})
    }

    /// Adds `a` to link `index`.
    pub fn add_addr(&mut self, index: u32, a: &Addr) -> Result<(), Errno> {
        let body = ifaddrmsg(a.family, a.prefixlen, 0, a.scope, index);
        let seq = self.send(
            RTM_NEWADDR,
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &body,
            &a.attrs,
        )?;
        self.replies(seq, |_, _| {})
    }

    /// Sets link `index` up.
    pub fn set_up(&mut self, index: i32) -> Result<(), Errno> {
        let seq = self.send(
            RTM_NEWLINK,
            NLM_F_ACK,
            &ifinfomsg(index, IFF_UP, IFF_UP),
            &[],
        )?;
        self.replies(seq, |_, _| {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_request_has_the_kernel_layout() {
        let m = message(
            RTM_NEWLINK,
            NLM_F_ACK,
            7,
            &ifinfomsg(5, 0, 0),
            &[
                (IFLA_NET_NS_FD, 9u32.to_ne_bytes().to_vec()),
                (IFLA_IFNAME, b"eth0\0".to_vec()),
            ],
        );
        // header 16 + ifinfomsg 16 + fd attr 8 + name attr 4+5 padded to 12
        assert_eq!(m.len(), 52);
        assert_eq!(u32_at(&m, 0), Some(52));
        assert_eq!(u16_at(&m, 4), Some(RTM_NEWLINK));
        assert_eq!(u16_at(&m, 6), Some(NLM_F_ACK | NLM_F_REQUEST));
        assert_eq!(u32_at(&m, 8), Some(7));
        assert_eq!(u32_at(&m, 20), Some(5));
        let at = attrs(&m[32..]);
        assert_eq!(
            at,
            vec![
                (IFLA_NET_NS_FD, &9u32.to_ne_bytes()[..]),
                (IFLA_IFNAME, &b"eth0\0"[..])
            ]
        );
    }

    #[test]
    fn replies_are_split_and_parsed() {
        let link = message(
            RTM_NEWLINK,
            0,
            1,
            &ifinfomsg(3, 0, 0),
            &[(IFLA_IFNAME, b"dummy0\0".to_vec())],
        );
        let addr = message(
            RTM_NEWADDR,
            0,
            1,
            &ifaddrmsg(2, 24, 0x80, 0, 3),
            &[
                (IFA_LOCAL, vec![10, 0, 0, 1]),
                (IFA_FLAGS, 0x80u32.to_ne_bytes().to_vec()),
            ],
        );
        let mut both = link.clone();
        both.extend_from_slice(&addr);
        let msgs = split(&both).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(parse_link(msgs[0].2), Some((3, "dummy0".to_string())));
        let a = parse_addr(msgs[1].2).unwrap();
        assert_eq!((a.family, a.prefixlen, a.index), (2, 24, 3));
        assert!(a.is_permanent_global());
        assert_eq!(a.attrs, vec![(IFA_LOCAL, vec![10, 0, 0, 1])]);
        assert!(split(&both[..20]).is_err());
    }
}
