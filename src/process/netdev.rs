//! `linux.netDevices`: host network interfaces moved into the container's
//! (new) network namespace, renamed, with their permanent global addresses
//! kept and the link set up, as runtime-spec 1.3 asks. Runs in the runtime
//! (parent) once the init exists, before `create` reports the container.

use std::collections::HashSet;
use std::os::fd::{AsFd, OwnedFd};

use nix::sched::{CloneFlags, setns};
use nix::unistd::Pid;
use oci_spec::runtime::{Linux, LinuxNamespaceType};

use crate::error::{Context, Error, Result};
use crate::sys::netlink::Rtnl;

/// IFNAMSIZ - 1: the longest interface name.
const MAX_NAME: usize = 15;

fn check_name(field: &str, name: &str, template: bool) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
        && (template || !name.contains('%'))
        && name.matches('%').count() == name.matches("%d").count()
        && name.matches("%d").count() <= 1;
    if ok {
        Ok(())
    } else {
        Err(Error::Spec(format!(
            "{field} {name:?} is not a valid interface name"
        )))
    }
}

/// Pure checks: valid names, no two devices with one name in the
/// container, and a new network namespace to move them into.
pub(crate) fn validate(linux: &Linux) -> Result<()> {
    let Some(devs) = linux.net_devices().as_ref().filter(|d| !d.is_empty()) else {
        return Ok(());
    };
    let new_netns = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_none());
    if !new_netns {
        return Err(Error::Spec(
            "linux.netDevices needs a new network namespace (a \"network\" entry without a path in linux.namespaces)".into(),
        ));
    }
    let mut targets = HashSet::new();
    for (host, d) in devs {
        check_name("linux.netDevices key", host, false)?;
        let target = target_name(host, d.name().as_deref());
        check_name(&format!("linux.netDevices.{host}.name"), target, true)?;
        if !target.contains("%d") && !targets.insert(target) {
            return Err(Error::Spec(format!(
                "linux.netDevices: two devices are named {target:?} in the container"
            )));
        }
    }
    Ok(())
}

fn target_name<'a>(host: &'a str, name: Option<&'a str>) -> &'a str {
    name.filter(|n| !n.is_empty()).unwrap_or(host)
}

/// Moves every device of `linux.netDevices` into the network namespace of
/// the container's init `init`. Every host interface is looked up before
/// the first moves, so a missing one leaves all of them on the host.
pub(crate) fn move_devices(linux: &Linux, init: Pid) -> Result<()> {
    let Some(devs) = linux.net_devices().as_ref().filter(|d| !d.is_empty()) else {
        return Ok(());
    };
    let mut devs: Vec<_> = devs.iter().collect();
    devs.sort_by(|a, b| a.0.cmp(b.0));
    let path = format!("/proc/{init}/ns/net");
    let netns: OwnedFd = nix::fcntl::open(
        path.as_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(Error::Process, || format!("linux.netDevices: open {path}"))?;
    let mut host =
        Rtnl::open().ctx(Error::Process, || "linux.netDevices: open a netlink socket")?;
    // A socket belongs to the network namespace it was made in: make one
    // in the container's from a short-lived thread (setns affects only it).
    let mut ctr = std::thread::scope(|s| {
        s.spawn(|| {
            setns(&netns, CloneFlags::CLONE_NEWNET)?;
            Rtnl::open()
        })
        .join()
        .unwrap_or(Err(nix::errno::Errno::EIO))
    })
    .ctx(Error::Process, || {
        format!("linux.netDevices: a netlink socket in the network namespace of {path}")
    })?;

    let host_links = host.links().ctx(
        Error::Process,
        || "linux.netDevices: list the host's interfaces",
    )?;
    let mut plan = Vec::new();
    for (name, d) in &devs {
        let index = host_links
            .iter()
            .find(|(_, n)| n == *name)
            .map(|(i, _)| *i)
            .ok_or_else(|| {
                Error::Process(format!(
                    "linux.netDevices: host interface {name:?} does not exist"
                ))
            })?;
        plan.push((name.as_str(), target_name(name, d.name().as_deref()), index));
    }
    for (name, target, index) in plan {
        let addrs: Vec<_> = host
            .addrs(index as u32)
            .ctx(Error::Process, || {
                format!("linux.netDevices: addresses of {name:?}")
            })?
            .into_iter()
            .filter(|a| a.is_permanent_global())
            .collect();
        let before = ctr.links().ctx(
            Error::Process,
            || "linux.netDevices: list the container's interfaces",
        )?;
        if before.iter().any(|(_, n)| n == target) {
            return Err(Error::Process(format!(
                "linux.netDevices.{name}: {target:?} already exists in the container's network namespace"
            )));
        }
        host.move_link(index, netns.as_fd(), target)
            .ctx(Error::Process, || {
                format!("linux.netDevices: move {name:?} into the container as {target:?}")
            })?;
        let after = ctr.links().ctx(
            Error::Process,
            || "linux.netDevices: list the container's interfaces",
        )?;
        let (new_index, new_name) = after
            .into_iter()
            .find(|(i, _)| !before.iter().any(|(b, _)| b == i))
            .ok_or_else(|| {
                Error::Process(format!(
                    "linux.netDevices: {name:?} is not in the container after the move"
                ))
            })?;
        for a in &addrs {
            ctr.add_addr(new_index as u32, a).ctx(Error::Process, || {
                format!("linux.netDevices: keep an address of {name:?} on {new_name:?}")
            })?;
        }
        ctr.set_up(new_index).ctx(Error::Process, || {
            format!("linux.netDevices: set {new_name:?} up in the container")
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn linux(v: serde_json::Value) -> Linux {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn names_and_namespace_are_checked() {
        let ns = json!([{"type": "mount"}, {"type": "network"}]);
        validate(&linux(
            json!({"namespaces": ns, "netDevices": {"eth0": {"name": "ctr0"}}}),
        ))
        .unwrap();
        validate(&linux(
            json!({"namespaces": ns, "netDevices": {"eth0": {}, "eth1": {"name": "net%d"}}}),
        ))
        .unwrap();
        let e = validate(&linux(
            json!({"namespaces": [{"type": "mount"}], "netDevices": {"eth0": {}}}),
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("needs a new network namespace"), "{e}");
        let e = validate(&linux(
            json!({"namespaces": ns, "netDevices": {"eth0": {"name": "a/b"}}}),
        ))
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "linux.netDevices.eth0.name \"a/b\" is not a valid interface name"
        );
        let e = validate(&linux(
            json!({"namespaces": ns, "netDevices": {"eth0": {"name": "x"}, "eth1": {"name": "x"}}}),
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("two devices are named \"x\""), "{e}");
        for invalid in ["", "0123456789abcdef", "a b", "a%s", "."] {
            assert!(check_name("f", invalid, true).is_err(), "{invalid:?}");
        }
        assert!(check_name("f", "eth%d", false).is_err());
    }
}
