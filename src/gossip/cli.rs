//! The gossip flags both daemons take (`gitdb-mount` and `gitdb serve`), and their `-o` form
//! for fstab, parsed and checked here so that the binaries only wire (as the mount's own
//! options are parsed in `fuse::options`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use super::key::ClusterKey;
use super::service::GossipConfig;
use crate::merge::{Strategy, merge_driver};
use crate::remote::RemoteConfig;

/// The flags; all optional: without `--listen` and `--peer` a node is a single node.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct GossipArgs {
    /// Accept gossip peers on ADDR (host:port; port 0 picks one).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// A seed peer (host:port); repeatable. Others are learned from announces.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,
    /// The address peers should dial to reach this node, if not --listen's.
    #[arg(long, value_name = "ADDR")]
    pub advertise: Option<String>,
    /// How concurrent changes to one key merge: lww, keep-both (default), or a merge-driver
    /// command in git's form ('cmd %O %A %B'; a failing command keeps both).
    #[arg(long, value_name = "lww|keep-both|CMD")]
    pub merge: Option<String>,
    /// Peers gossiped with each round and pushed to on each change (default 3).
    #[arg(long, value_name = "N")]
    pub fanout: Option<usize>,
    /// Time between anti-entropy rounds (default 1s).
    #[arg(long, value_name = "DUR")]
    pub interval: Option<String>,
    /// The longest one exchange with a peer may take, whatever it transfers (default 27m: the
    /// largest blob a peer may send, 16 GiB, at 10 MiB/s).
    #[arg(long, value_name = "DUR")]
    pub exchange_deadline: Option<String>,
    /// The cluster's shared secret (at least 32 bytes). Without it a node only talks to
    /// loopback peers, unless --insecure.
    #[arg(long, value_name = "PATH")]
    pub cluster_key_file: Option<PathBuf>,
    /// Talk to non-loopback peers without a cluster key (anyone who can reach the port can
    /// read and write the store).
    #[arg(long)]
    pub insecure: bool,
    /// A git remote to sync with through the git CLI (fetch, merge, push), as hub and
    /// backup: any URL git takes (file://, ssh://, https://, git://); repeatable.
    #[arg(long = "remote", value_name = "URL")]
    pub remotes: Vec<String>,
    /// Time between syncs with the remotes, besides one after each commit (default 10s).
    #[arg(long, value_name = "DUR")]
    pub remote_interval: Option<String>,
    /// The longest one git call to a remote may take before it is killed (default 60s).
    #[arg(long, value_name = "DUR")]
    pub remote_timeout: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GossipCliError {
    #[error("--{option} {value}: {reason}")]
    Bad {
        option: &'static str,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    Key(String),
}

/// The `-o` names of the flags above.
pub const OPTIONS: [&str; 12] = [
    "listen",
    "peer",
    "advertise",
    "merge",
    "fanout",
    "interval",
    "exchange_deadline",
    "cluster_key_file",
    "insecure",
    "remote",
    "remote_interval",
    "remote_timeout",
];

fn bad(option: &'static str, value: &str, reason: impl Into<String>) -> GossipCliError {
    GossipCliError::Bad {
        option,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

fn resolve(option: &'static str, addr: &str) -> Result<SocketAddr, GossipCliError> {
    addr.to_socket_addrs()
        .map_err(|e| bad(option, addr, e.to_string()))?
        .next()
        .ok_or_else(|| bad(option, addr, "resolves to no address"))
}

/// A merge strategy by name, or a merge-driver command.
pub fn parse_merge(s: &str) -> Result<Strategy, GossipCliError> {
    Ok(match s.trim() {
        "lww" | "last-write-wins" => Strategy::LastWriteWins,
        "keep-both" | "keepboth" => Strategy::KeepBoth,
        "" => return Err(bad("merge", s, "expected lww, keep-both or a command")),
        cmd => merge_driver(cmd, Duration::from_secs(10)),
    })
}

impl GossipArgs {
    /// Takes the `-o` option `key[=value]` (one of [`OPTIONS`]). A flag on the command line
    /// wins over the same `-o` option, as for the mount's options; `peer` adds to `--peer`.
    pub fn take_option(&mut self, key: &str, value: Option<&str>) -> Result<(), GossipCliError> {
        let need = |option: &'static str| {
            value
                .map(str::to_owned)
                .ok_or_else(|| bad(option, "", "needs =VALUE"))
        };
        match key {
            "listen" => self.listen = self.listen.take().or(Some(need("listen")?)),
            "peer" => self.peers.push(need("peer")?),
            "advertise" => self.advertise = self.advertise.take().or(Some(need("advertise")?)),
            "merge" => self.merge = self.merge.take().or(Some(need("merge")?)),
            "fanout" => {
                let v = need("fanout")?;
                let n = v.parse().map_err(|_| bad("fanout", &v, "needs a number"))?;
                self.fanout = self.fanout.or(Some(n));
            }
            "interval" => self.interval = self.interval.take().or(Some(need("interval")?)),
            "exchange_deadline" => {
                self.exchange_deadline = self
                    .exchange_deadline
                    .take()
                    .or(Some(need("exchange-deadline")?))
            }
            "cluster_key_file" => {
                let v = need("cluster-key-file")?;
                self.cluster_key_file = self.cluster_key_file.take().or(Some(PathBuf::from(v)));
            }
            "insecure" => self.insecure = true,
            "remote" => self.remotes.push(need("remote")?),
            "remote_interval" => {
                self.remote_interval = self
                    .remote_interval
                    .take()
                    .or(Some(need("remote-interval")?))
            }
            "remote_timeout" => {
                self.remote_timeout = self.remote_timeout.take().or(Some(need("remote-timeout")?))
            }
            other => return Err(bad("o", other, "not a gossip option")),
        }
        Ok(())
    }

    /// The git remotes' configuration (see [`crate::remote`]), or `None` without `--remote`.
    pub fn remote_config(&self) -> Result<Option<RemoteConfig>, GossipCliError> {
        if self.remotes.is_empty() {
            if self.remote_interval.is_some() || self.remote_timeout.is_some() {
                return Err(bad(
                    "remote",
                    "",
                    "--remote-interval/-timeout without --remote",
                ));
            }
            return Ok(None);
        }
        let duration = |option: &'static str, v: &Option<String>, default: Duration| {
            let Some(v) = v else {
                return Ok(default);
            };
            let d =
                humantime::parse_duration(v.trim()).map_err(|e| bad(option, v, e.to_string()))?;
            if !(Duration::from_millis(10)..=Duration::from_secs(24 * 3600)).contains(&d) {
                return Err(bad(option, v, "use 10ms to 24h"));
            }
            Ok(d)
        };
        for url in &self.remotes {
            if url.trim().is_empty() || url.starts_with('-') {
                return Err(bad("remote", url, "not a git URL"));
            }
        }
        let strategy = match &self.merge {
            Some(m) => parse_merge(m)?,
            None => Strategy::KeepBoth,
        };
        Ok(Some(RemoteConfig {
            urls: self.remotes.clone(),
            interval: duration(
                "remote-interval",
                &self.remote_interval,
                Duration::from_secs(10),
            )?,
            timeout: duration(
                "remote-timeout",
                &self.remote_timeout,
                Duration::from_secs(60),
            )?,
            strategy: std::sync::Arc::new(strategy),
        }))
    }

    /// The service's configuration, or `None` for a single node. Reads the key file.
    pub fn config(&self) -> Result<Option<GossipConfig>, GossipCliError> {
        if self.listen.is_none() && self.peers.is_empty() {
            let stray = self.advertise.is_some()
                || self.fanout.is_some()
                || self.interval.is_some()
                || self.exchange_deadline.is_some()
                || self.cluster_key_file.is_some();
            if stray {
                return Err(bad(
                    "listen",
                    "",
                    "gossip flags were given without --listen or --peer",
                ));
            }
            return Ok(None);
        }
        let strategy = match &self.merge {
            Some(m) => parse_merge(m)?,
            None => Strategy::KeepBoth,
        };
        let mut cfg = GossipConfig::new(strategy);
        if let Some(l) = &self.listen {
            cfg.listen = Some(resolve("listen", l)?);
        }
        for p in &self.peers {
            // Checked now so a typo fails at start; dialed by name later (DNS may change).
            resolve("peer", p)?;
        }
        cfg.peers = self.peers.clone();
        cfg.advertise = self.advertise.clone();
        if let Some(n) = self.fanout {
            if !(1..=64).contains(&n) {
                return Err(bad("fanout", &n.to_string(), "use 1 to 64"));
            }
            cfg.fanout = n;
        }
        if let Some(i) = &self.interval {
            let d = humantime::parse_duration(i.trim())
                .map_err(|e| bad("interval", i, e.to_string()))?;
            if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&d) {
                return Err(bad("interval", i, "use 10ms to 1h"));
            }
            cfg.interval = d;
        }
        if let Some(v) = &self.exchange_deadline {
            let d = humantime::parse_duration(v.trim())
                .map_err(|e| bad("exchange-deadline", v, e.to_string()))?;
            if !(Duration::from_secs(1)..=Duration::from_secs(7 * 24 * 3600)).contains(&d) {
                return Err(bad("exchange-deadline", v, "use 1s to 7d"));
            }
            cfg.deadline = d;
        }
        if let Some(path) = &self.cluster_key_file {
            cfg.key =
                ClusterKey::from_file(path).map_err(|e| GossipCliError::Key(e.to_string()))?;
        }
        cfg.insecure = self.insecure;
        Ok(Some(cfg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_options_make_a_config() {
        let mut a = GossipArgs {
            listen: Some("127.0.0.1:0".into()),
            ..Default::default()
        };
        a.take_option("peer", Some("127.0.0.1:7001")).unwrap();
        a.take_option("listen", Some("127.0.0.1:9")).unwrap();
        a.take_option("fanout", Some("5")).unwrap();
        a.take_option("interval", Some("250ms")).unwrap();
        a.take_option("merge", Some("lww")).unwrap();
        let cfg = a.config().unwrap().unwrap();
        assert_eq!(cfg.deadline, crate::gossip::exchange::DEADLINE);
        a.take_option("exchange_deadline", Some("2s")).unwrap();
        let cfg = a.config().unwrap().unwrap();
        assert_eq!(cfg.deadline, Duration::from_secs(2));
        assert_eq!(cfg.listen.unwrap().port(), 0, "the flag wins over -o");
        assert_eq!(cfg.peers, vec!["127.0.0.1:7001".to_string()]);
        assert_eq!((cfg.fanout, cfg.interval), (5, Duration::from_millis(250)));
        assert!(matches!(*cfg.strategy, Strategy::LastWriteWins));
        assert!(GossipArgs::default().config().unwrap().is_none());
    }

    #[test]
    fn remote_flags_and_options_make_a_remote_config() {
        let mut a = GossipArgs::default();
        assert!(a.remote_config().unwrap().is_none());
        a.take_option("remote", Some("file:///srv/hub.git"))
            .unwrap();
        a.take_option("remote", Some("git://hub/x.git")).unwrap();
        a.take_option("remote_interval", Some("250ms")).unwrap();
        let cfg = a.remote_config().unwrap().unwrap();
        assert_eq!(cfg.urls, ["file:///srv/hub.git", "git://hub/x.git"]);
        assert_eq!(cfg.interval, Duration::from_millis(250));
        assert_eq!(cfg.timeout, Duration::from_secs(60));
        assert!(a.config().unwrap().is_none(), "a hub alone is no gossip");
        for (k, v) in [("remote_interval", "1ms"), ("remote_timeout", "never")] {
            let mut b = a.clone();
            b.remote_interval = None;
            b.take_option(k, Some(v)).unwrap();
            assert!(b.remote_config().is_err(), "{k}={v} accepted");
        }
        let stray = GossipArgs {
            remote_timeout: Some("5s".into()),
            ..Default::default()
        };
        assert!(stray.remote_config().is_err());
        let dash = GossipArgs {
            remotes: vec!["--upload-pack=evil".into()],
            ..Default::default()
        };
        assert!(
            dash.remote_config().is_err(),
            "a URL that git would take as a flag"
        );
    }

    #[test]
    fn bad_values_are_refused_with_their_name() {
        let base = GossipArgs {
            peers: vec!["127.0.0.1:1".into()],
            ..Default::default()
        };
        for (k, v) in [
            ("fanout", "0"),
            ("fanout", "x"),
            ("interval", "1ms"),
            ("interval", "soon"),
            ("exchange_deadline", "10ms"),
            ("exchange_deadline", "later"),
            ("merge", " "),
        ] {
            let mut a = base.clone();
            let r = a
                .take_option(k, Some(v))
                .and_then(|_| a.config().map(|_| ()));
            assert!(r.is_err(), "{k}={v} accepted");
        }
        let mut a = base.clone();
        a.peers = vec!["no-port".into()];
        assert!(a.config().is_err());
        let a = GossipArgs {
            fanout: Some(3),
            ..Default::default()
        };
        assert!(a.config().is_err(), "gossip flags without --listen/--peer");
        let a = GossipArgs {
            cluster_key_file: Some("/nonexistent/key".into()),
            ..base
        };
        assert!(matches!(a.config(), Err(GossipCliError::Key(_))));
    }
}
