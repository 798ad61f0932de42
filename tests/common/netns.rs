//! Hosts of their own for multi-node tests: one network namespace per node, each with an
//! `eth0` veth whose other end sits on a bridge in a hub namespace, and an address of the test's
//! own (`10.77.SUBNET.N/24`). Pulling a node's cable (`eth0` down) is a real partition: its
//! dials fail with "network unreachable" and its peers' SYNs go unanswered, as between hosts.
//!
//! Namespace names carry the test process's pid and the subnet, so tests run in parallel (and
//! beside a leftover of a killed run) without clashing; veth names only need to be unique
//! inside their namespace. Everything is deleted on drop, even when the test panics, and
//! namespaces left by a run that was killed (its pid gone) are deleted by the next one.
//! Needs root and iproute2, as the tests run.

use std::process::Command;

/// The hub namespace with its bridge, and the hosts attached to it.
pub struct Net {
    prefix: String,
    subnet: u8,
    hub: String,
    hosts: Vec<String>,
}

/// One host: its namespace and address.
#[derive(Debug, Clone)]
pub struct Host {
    pub ns: String,
    pub ip: String,
}

/// `ip args`, asserting success.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip(8)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces named `gitdb-PID-…` whose test process is gone.
fn delete_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("gitdb-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

impl Net {
    /// A hub for `10.77.subnet.0/24`; give each test in a binary its own `subnet`.
    pub fn new(subnet: u8) -> Net {
        delete_stale();
        let prefix = format!("gitdb-{}-{subnet}", std::process::id());
        let hub = format!("{prefix}-hub");
        let net = Net {
            prefix,
            subnet,
            hub: hub.clone(),
            hosts: Vec::new(),
        };
        // Registered before anything else can fail, so Drop deletes what was made.
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        net
    }

    /// A new host on the bridge, `eth0` up with the next address.
    pub fn add_host(&mut self) -> Host {
        let n = self.hosts.len() + 1;
        assert!(n < 255, "at most 254 hosts on a /24");
        let ns = format!("{}-{n}", self.prefix);
        ip(&["netns", "add", &ns]);
        self.hosts.push(ns.clone());
        let hub_dev = format!("h{n}");
        ip(&[
            "-n", &self.hub, "link", "add", &hub_dev, "type", "veth", "peer", "name", "eth0",
            "netns", &ns,
        ]);
        ip(&[
            "-n", &self.hub, "link", "set", &hub_dev, "master", "br0", "up",
        ]);
        let addr = format!("10.77.{}.{n}", self.subnet);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        Host { ns, ip: addr }
    }

    /// Pulls `host`'s cable: its `eth0` goes down (its address stays, for the heal).
    pub fn cut(&self, host: &Host) {
        ip(&["-n", &host.ns, "link", "set", "eth0", "down"]);
    }

    /// Plugs it back in.
    pub fn heal(&self, host: &Host) {
        ip(&["-n", &host.ns, "link", "set", "eth0", "up"]);
    }

    /// `command` run inside `host`'s namespace, for a [`super::serve::Serve::launch`].
    pub fn command(host: &Host, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &host.ns, program]);
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace removes its veth ends (and so their peers in the hub).
        for ns in self.hosts.iter().chain(std::iter::once(&self.hub)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
