//! The mount's command line: `gitdb-mount`'s flags and the `-o` options an `/etc/fstab` line
//! passes, parsed and checked here, in the library, so that `mount.fuse.gitdb`, the daemon
//! and the tests agree on one meaning (as mountpoint-s3 keeps its CLI and fstab parsing).
//!
//! Bad input is an error that names it, never a panic and never a warning the mount goes on
//! past: an unknown `-o` option (`alow_other`) is refused, as libfuse and sshfs refuse one,
//! since mounting without what the user meant (here: other users shut out) is worse than not
//! mounting. Durations are parsed by `humantime` and bounded (a year), so no value overflows
//! a deadline later.

use std::path::PathBuf;
use std::time::Duration;

use fuser::{MountOption, SessionACL};

use super::background::MountOptions;
use crate::db::{NodeId, Options};

/// Errors of the mount's command line, each naming the option or value concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("unknown mount option {0:?} (see `gitdb-mount --help` for the options)")]
    Unknown(String),
    #[error("-o {0} needs =VALUE")]
    NeedsValue(String),
    #[error("-o {option}={value}: {reason}")]
    BadValue {
        option: String,
        value: String,
        reason: String,
    },
    #[error("invalid duration {value:?}: {reason} (examples: 500ms, 5s, 2m, 1h 30m)")]
    Duration { value: String, reason: String },
    /// `--node-id` or `-o node_id=`: the clock's error says what a node id may hold.
    #[error(transparent)]
    Node(#[from] crate::db::ClockError),
    #[error(transparent)]
    Gossip(#[from] crate::gossip::cli::GossipCliError),
}

pub use crate::durations::{Autocommit, MAX_DURATION};

/// A duration such as `500ms`, `5s`, `2m`, `1h 30m`, or a bare number of seconds; at most
/// [`MAX_DURATION`] (see [`crate::durations`]).
pub fn parse_duration(s: &str) -> Result<Duration, OptionsError> {
    crate::durations::parse_duration(s).map_err(OptionsError::from)
}

/// `off` (or `0`): never; else a duration.
pub fn parse_autocommit(s: &str) -> Result<Autocommit, OptionsError> {
    crate::durations::parse_autocommit(s).map_err(OptionsError::from)
}

impl From<crate::durations::DurationError> for OptionsError {
    fn from(e: crate::durations::DurationError) -> OptionsError {
        OptionsError::Duration {
            value: e.value,
            reason: e.reason,
        }
    }
}

/// `gitdb-mount`'s flags.
#[derive(clap::Parser, Debug)]
#[command(
    name = "gitdb-mount",
    version,
    about = "Mount a gitdb key-value store (a git repository) as a filesystem"
)]
pub struct MountCli {
    /// Where to mount (created if absent; a stale mount left by a killed daemon is detached).
    pub mountpoint: PathBuf,
    /// Repository (default: $GITDB_REPO, else gitdb/repo.git in the data directory; created if absent).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// This node's id (default: $GITDB_NODE_ID or the hostname).
    #[arg(long)]
    pub node_id: Option<String>,
    /// Branch holding the keys.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// Commit the working layer after this much quiet: `off`, or a duration such as `500ms`,
    /// `5s`, `2m` (a bare number is seconds).
    #[arg(long, default_value = "off", value_parser = parse_autocommit)]
    pub autocommit: Autocommit,
    /// Mount read-only (no writer lock: works beside another writer).
    #[arg(long)]
    pub read_only: bool,
    /// On SIGINT/SIGTERM, how long to wait for files still open on the mount to be closed
    /// (what they hold is stored at once either way) before detaching it.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub stop_timeout: Duration,
    /// Stay in the foreground (the default and only mode; for compatibility with mount helpers).
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// Mount options, comma-separated, repeatable: ro, rw, allow_other, allow_root,
    /// default_permissions, uid=N, gid=N, umask=OCTAL (what paths without node-local
    /// metadata show: owner, group, and the mode bits they lack; default the mounting user
    /// and 022), fsname=S, subtype=S, noexec, nosuid, nodev,
    /// noatime, ..., and repo=PATH, node_id=ID, branch=B, autocommit=DUR, stop_timeout=DUR,
    /// threads=N (FUSE worker threads), value_cache=MIB (plain copies of large values kept
    /// for fast reads; default 1024), readdirplus (listings carry attributes: faster cold
    /// `ls -l`, slower `ls`; default off), busy_poll=US (keep the FUSE worker polling while
    /// requests come less than US µs apart; 10 to 100000, default 100, 0: off), nofollow_cpu
    /// (on a saturated machine, do not move the FUSE worker to the CPU of the application it
    /// serves; follow_cpu, the default, does). fstab words
    /// (defaults, auto, noauto, user, nofail, _netdev, x-*, ...) are accepted and ignored; any
    /// other option is an error. The gossip flags below take `-o` too: listen=ADDR,
    /// peer=HOST:PORT (repeatable), advertise=ADDR, merge=M, fanout=N, interval=DUR,
    /// exchange_deadline=DUR, cluster_key_file=PATH, insecure, remote=URL (repeatable),
    /// remote_interval=DUR, remote_timeout=DUR.
    #[arg(short = 'o', value_name = "OPTION")]
    pub options: Vec<String>,
    #[command(flatten)]
    pub gossip: crate::gossip::cli::GossipArgs,
}

/// What the `-o` options amount to.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Parsed {
    pub mount: Vec<MountOption>,
    pub acl: Option<SessionACL>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub umask: Option<u32>,
    pub read_only: bool,
    pub repo: Option<PathBuf>,
    pub node_id: Option<String>,
    pub branch: Option<String>,
    pub autocommit: Option<Autocommit>,
    pub threads: Option<usize>,
    pub value_cache_mib: Option<u64>,
    pub readdirplus: Option<bool>,
    pub busy_poll_us: Option<u64>,
    pub follow_cpu: Option<bool>,
    pub stop_timeout: Option<Duration>,
    /// Gossip options (see [`crate::gossip::cli::OPTIONS`]), in order.
    pub gossip: Vec<(String, Option<String>)>,
}

/// Parses `-o` options (each argument comma-separated).
pub fn parse_options(opts: &[String]) -> Result<Parsed, OptionsError> {
    let mut p = Parsed::default();
    for opt in opts.iter().flat_map(|o| o.split(',')).map(str::trim) {
        let (k, v) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        let need = |v: Option<&str>| {
            v.map(str::to_owned)
                .ok_or_else(|| OptionsError::NeedsValue(k.to_owned()))
        };
        let bad = |value: &str, reason: &str| OptionsError::BadValue {
            option: k.to_owned(),
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let number = |v: Option<&str>| -> Result<u64, OptionsError> {
            let v = need(v)?;
            v.parse().map_err(|_| bad(&v, "needs a number"))
        };
        match k {
            "" => {}
            "ro" => {
                p.read_only = true;
                p.mount.push(MountOption::RO);
            }
            "rw" => p.mount.push(MountOption::RW),
            "dev" => p.mount.push(MountOption::Dev),
            "nodev" => p.mount.push(MountOption::NoDev),
            "suid" => p.mount.push(MountOption::Suid),
            "nosuid" => p.mount.push(MountOption::NoSuid),
            "exec" => p.mount.push(MountOption::Exec),
            "noexec" => p.mount.push(MountOption::NoExec),
            "atime" => p.mount.push(MountOption::Atime),
            "noatime" => p.mount.push(MountOption::NoAtime),
            "sync" => p.mount.push(MountOption::Sync),
            "async" => p.mount.push(MountOption::Async),
            "dirsync" => p.mount.push(MountOption::DirSync),
            "default_permissions" => p.mount.push(MountOption::DefaultPermissions),
            "auto_unmount" => p.mount.push(MountOption::AutoUnmount),
            "allow_other" => p.acl = Some(SessionACL::All),
            "allow_root" => p.acl = Some(SessionACL::RootAndOwner),
            "fsname" => p.mount.push(MountOption::FSName(need(v)?)),
            "subtype" => p.mount.push(MountOption::Subtype(need(v)?)),
            "uid" => {
                let n = number(v)?;
                p.uid = Some(u32::try_from(n).map_err(|_| bad(&n.to_string(), "too large"))?);
            }
            "gid" => {
                let n = number(v)?;
                p.gid = Some(u32::try_from(n).map_err(|_| bad(&n.to_string(), "too large"))?);
            }
            "umask" => {
                // Octal, as vfat's and rclone's (`umask=077`, `umask=0022`).
                let v = need(v)?;
                let n = u32::from_str_radix(&v, 8)
                    .ok()
                    .filter(|n| *n <= 0o777)
                    .ok_or_else(|| bad(&v, "needs an octal mode from 0 to 777"))?;
                p.umask = Some(n);
            }
            "repo" => p.repo = Some(PathBuf::from(need(v)?)),
            "node_id" => p.node_id = Some(need(v)?),
            "branch" => p.branch = Some(need(v)?),
            "autocommit" => p.autocommit = Some(parse_autocommit(&need(v)?)?),
            "stop_timeout" => p.stop_timeout = Some(parse_duration(&need(v)?)?),
            "threads" => {
                let n = number(v)?;
                if !(1..=256).contains(&n) {
                    return Err(bad(&n.to_string(), "use 1 to 256 worker threads"));
                }
                p.threads = Some(n as usize);
            }
            "readdirplus" => p.readdirplus = Some(true),
            "noreaddirplus" => p.readdirplus = Some(false),
            "follow_cpu" => p.follow_cpu = Some(true),
            "nofollow_cpu" => p.follow_cpu = Some(false),
            "busy_poll" => {
                let us = number(v)?;
                // Shorter periods make the governor itself spin; longer ones keep a whole
                // CPU busy long after the application stopped.
                if us != 0 && !(10..=100_000).contains(&us) {
                    return Err(bad(
                        &us.to_string(),
                        "use 0 (off) or 10 to 100000 microseconds",
                    ));
                }
                p.busy_poll_us = Some(us);
            }
            "value_cache" => {
                let mib = number(v)?;
                // In bytes it must fit a u64 (an unchecked shift would wrap to a small budget).
                mib.checked_mul(1 << 20)
                    .ok_or_else(|| bad(&mib.to_string(), "too large"))?;
                p.value_cache_mib = Some(mib);
            }
            // Words mount(8) and fstab pass along for userspace tools; they mean nothing here.
            "defaults" | "auto" | "noauto" | "user" | "users" | "nouser" | "owner" | "group"
            | "nofail" | "_netdev" | "relatime" | "norelatime" | "strictatime" | "lazytime"
            | "nolazytime" | "comment" => {}
            x if x.starts_with("x-") => {}
            g if crate::gossip::cli::OPTIONS.contains(&g) => {
                p.gossip.push((g.to_owned(), v.map(str::to_owned)));
            }
            other => return Err(OptionsError::Unknown(other.to_owned())),
        }
    }
    Ok(p)
}

/// What a command line asks for: the repository, the node, how to open the db and how to
/// mount. Flags given as `-o` win over the flags (an fstab line can say everything).
#[derive(Debug)]
pub struct MountPlan {
    pub mountpoint: PathBuf,
    pub repo: PathBuf,
    pub node: NodeId,
    pub db: Options,
    pub mount: MountOptions,
    /// `None`: a single node.
    pub gossip: Option<crate::gossip::GossipConfig>,
    /// `None`: no `--remote`.
    pub remote: Option<crate::remote::RemoteConfig>,
}

impl MountCli {
    pub fn plan(self) -> Result<MountPlan, OptionsError> {
        let parsed = parse_options(&self.options)?;
        let read_only = self.read_only || parsed.read_only;
        let crate::defaults::Identity { repo, node } = crate::defaults::resolve(
            self.repo.or(parsed.repo),
            self.node_id.as_deref().or(parsed.node_id.as_deref()),
        )?;
        let db = Options {
            branch: parsed.branch.unwrap_or(self.branch),
            read_only,
            ..Options::default()
        };
        let mut mount = MountOptions::default();
        mount.fs.read_only = read_only;
        if let Some(uid) = parsed.uid {
            mount.fs.uid = uid;
        }
        if let Some(gid) = parsed.gid {
            mount.fs.gid = gid;
        }
        if let Some(umask) = parsed.umask {
            mount.fs.umask = umask;
        }
        mount.autocommit = parsed.autocommit.unwrap_or(self.autocommit).0;
        mount.mount_options = parsed.mount;
        if read_only && !mount.mount_options.contains(&MountOption::RO) {
            mount.mount_options.push(MountOption::RO);
        }
        if let Some(n) = parsed.threads {
            mount.threads = n;
        }
        if let Some(mib) = parsed.value_cache_mib {
            mount.fs.value_cache = mib.saturating_mul(1 << 20);
        }
        if let Some(on) = parsed.readdirplus {
            mount.fs.readdirplus = on;
        }
        if let Some(us) = parsed.busy_poll_us {
            mount.busy_poll = (us > 0).then(|| Duration::from_micros(us));
        }
        if let Some(on) = parsed.follow_cpu {
            mount.follow_cpu = on;
        }
        if let Some(acl) = parsed.acl {
            mount.acl = acl;
        }
        mount.stop_timeout = parsed.stop_timeout.unwrap_or(self.stop_timeout);
        let mut gossip = self.gossip;
        for (k, v) in &parsed.gossip {
            gossip.take_option(k, v.as_deref())?;
        }
        let remote = gossip.remote_config()?;
        let gossip = gossip.config()?;
        if (gossip.is_some() || remote.is_some()) && read_only {
            return Err(OptionsError::BadValue {
                option: "listen".into(),
                value: String::new(),
                reason: "a read-only mount cannot take changes from peers".into(),
            });
        }
        Ok(MountPlan {
            mountpoint: self.mountpoint,
            repo,
            node,
            db,
            mount,
            gossip,
            remote,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use proptest::prelude::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration("2y").is_err(), "longer than a year");
        assert!(parse_autocommit("off").is_ok_and(|a| a.0.is_none()));
    }

    #[test]
    fn mount_options() {
        let p = parse_options(&["ro,uid=1000,autocommit=5s".into(), "allow_other".into()])
            .expect("parse");
        assert!(p.read_only);
        assert_eq!(p.uid, Some(1000));
        assert!(
            p.autocommit
                .is_some_and(|a| a.0 == Some(Duration::from_secs(5)))
        );
        assert_eq!(p.acl, Some(SessionACL::All));
        let own = parse_options(&["noatime,noreaddirplus,value_cache=64,busy_poll=0".into()])
            .expect("parse");
        assert_eq!(own.readdirplus, Some(false));
        let plus = parse_options(&["readdirplus".into()]).expect("parse");
        assert_eq!(plus.readdirplus, Some(true));
        let stay = parse_options(&["nofollow_cpu".into()]).expect("parse");
        assert_eq!(stay.follow_cpu, Some(false));
        assert_eq!(
            parse_options(&["follow_cpu".into()])
                .expect("parse")
                .follow_cpu,
            Some(true)
        );
        assert_eq!(own.value_cache_mib, Some(64));
        assert_eq!(own.busy_poll_us, Some(0));
        assert!(parse_options(&["value_cache=lots".into()]).is_err());
        assert!(parse_options(&[format!("value_cache={}", u64::MAX >> 10)]).is_err());
        assert!(parse_options(&["busy_poll=fast".into()]).is_err());
        assert!(parse_options(&["busy_poll=5".into()]).is_err());
        assert!(parse_options(&["busy_poll=200000".into()]).is_err());
        assert_eq!(
            parse_options(&["busy_poll=250".into()])
                .expect("parse")
                .busy_poll_us,
            Some(250)
        );
        assert!(parse_options(&["uid=x".into()]).is_err());
        assert_eq!(
            parse_options(&["umask=077".into()]).expect("parse").umask,
            Some(0o77)
        );
        assert_eq!(
            parse_options(&["umask=0022".into()]).expect("parse").umask,
            Some(0o22)
        );
        assert!(parse_options(&["umask=8".into()]).is_err());
        assert!(parse_options(&["umask=1777".into()]).is_err());
        assert!(parse_options(&["umask".into()]).is_err());
        assert!(parse_options(&["uid=99999999999".into()]).is_err());
        assert!(parse_options(&["threads=0".into()]).is_err());
        assert_eq!(
            parse_options(&["stop_timeout=2s".into()])
                .expect("parse")
                .stop_timeout,
            Some(Duration::from_secs(2))
        );
        assert!(parse_options(&["stop_timeout=soon".into()]).is_err());
        assert!(
            parse_options(&["autocommit".into()]).is_err(),
            "needs a value"
        );
    }

    /// A typo is refused, not warned about: mounting without what the user meant is worse.
    #[test]
    fn unknown_options_are_refused_fstab_words_are_not() {
        assert_eq!(
            parse_options(&["alow_other".into()]),
            Err(OptionsError::Unknown("alow_other".into()))
        );
        assert!(
            parse_options(&["defaults,noauto,nofail,_netdev,x-systemd.automount,user".into()])
                .is_ok()
        );
    }

    #[test]
    fn gossip_options_reach_the_plan_as_fstab_spells_them() {
        let cli = MountCli::try_parse_from([
            "gitdb-mount",
            "/mnt/x",
            "--peer",
            "127.0.0.1:7001",
            "-o",
            "listen=127.0.0.1:0,peer=127.0.0.1:7002,fanout=5,interval=250ms,merge=lww",
        ])
        .expect("cli");
        let g = cli.plan().expect("plan").gossip.expect("gossip on");
        assert_eq!(g.peers, ["127.0.0.1:7001", "127.0.0.1:7002"]);
        assert_eq!((g.fanout, g.interval), (5, Duration::from_millis(250)));
        assert!(g.listen.is_some());
        let single = MountCli::try_parse_from(["gitdb-mount", "/m"]).expect("cli");
        assert!(single.plan().expect("plan").gossip.is_none());
        for o in ["listen=127.0.0.1:0,ro", "fanout=5", "peer=nope", "listen"] {
            let cli = MountCli::try_parse_from(["gitdb-mount", "/m", "-o", o]).expect("cli");
            assert!(cli.plan().is_err(), "-o {o} accepted");
        }
    }

    #[test]
    fn options_win_over_flags() {
        let cli = MountCli::try_parse_from([
            "gitdb-mount",
            "/mnt/x",
            "--branch",
            "a",
            "--autocommit",
            "1s",
            "-o",
            "branch=b,autocommit=off,ro,threads=3",
        ])
        .expect("cli");
        let plan = cli.plan().expect("plan");
        assert_eq!(plan.db.branch, "b");
        assert!(plan.db.read_only && plan.mount.fs.read_only);
        assert_eq!(plan.mount.autocommit, None);
        assert_eq!(plan.mount.threads, 3);
        assert!(plan.mount.mount_options.contains(&MountOption::RO));
        assert!(
            MountCli::try_parse_from(["gitdb-mount", "/m", "--autocommit", "99999999999999999999"])
                .is_err()
        );
    }

    /// The node id's error is said once (it read "invalid node id: invalid node id ...").
    #[test]
    fn a_bad_node_id_is_named_once_with_what_a_node_id_may_hold() {
        let expected = "invalid node id \"a b\": use 1 to 64 characters from A-Z a-z 0-9 . _ -";
        for args in [["--node-id", "a b"], ["-o", "node_id=a b"]] {
            let cli =
                MountCli::try_parse_from(["gitdb-mount", "/m", args[0], args[1]]).expect("cli");
            let err = cli.plan().expect_err("a space in a node id");
            assert!(matches!(err, OptionsError::Node(_)), "{err:?}");
            assert_eq!(err.to_string(), expected);
        }
    }

    proptest! {
        /// No input panics: every string is an option list or an error that names it.
        #[test]
        fn no_option_string_panics(s in "\\PC{0,40}", t in "[a-z_=,0-9.]{0,30}") {
            let _ = parse_options(&[s.clone(), t.clone()]);
            let _ = parse_duration(&s);
            let _ = parse_duration(&t);
            let _ = parse_autocommit(&t);
            if let Ok(cli) = MountCli::try_parse_from(["gitdb-mount", "/m", "-o", s.as_str(), "-o", t.as_str()]) {
                let _ = cli.plan();
            }
        }

        #[test]
        fn no_duration_panics(n in any::<u64>(), unit in "(ns|us|ms|s|m|min|h|d|w|y|)") {
            let _ = parse_duration(&format!("{n}{unit}"));
        }
    }
}
