//! `gitdb-mount`: the FUSE daemon. Mounts a gitdb repository as a directory tree and stays in
//! the foreground (logs via `RUST_LOG`) until SIGINT/SIGTERM or an external `umount`; then it
//! syncs the journal, stops its threads, unmounts and exits 0.
//!
//! `-o` takes the usual FUSE/mount options (`ro`, `allow_other`, `uid=`, `gid=`, ...) plus
//! gitdb's own (`repo=`, `node_id=`, `branch=`, `autocommit=`), so an `/etc/fstab` line through
//! `scripts/mount.fuse.gitdb` can say everything the flags say.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use fuser::{MountOption, SessionACL};
use gitdb::db::Options;
use gitdb::fuse::{MountOptions, mount};
use gitdb::{GitDb, NodeId};

#[derive(Parser, Debug)]
#[command(
    name = "gitdb-mount",
    version,
    about = "Mount a gitdb key-value store (a git repository) as a filesystem"
)]
struct Cli {
    /// Where to mount (created if absent; a stale mount left by a killed daemon is detached).
    mountpoint: PathBuf,
    /// Repository (default: $GITDB_REPO, else gitdb/repo.git in the data directory; created if absent).
    #[arg(long)]
    repo: Option<PathBuf>,
    /// This node's id (default: $GITDB_NODE_ID or the hostname).
    #[arg(long)]
    node_id: Option<String>,
    /// Branch holding the keys.
    #[arg(long, default_value = "main")]
    branch: String,
    /// Commit the working layer after this much quiet: `off`, or a duration such as `500ms`,
    /// `5s`, `2m` (a bare number is seconds).
    #[arg(long, default_value = "off", value_parser = parse_autocommit)]
    autocommit: Autocommit,
    /// Mount read-only (no writer lock: works beside another writer).
    #[arg(long)]
    read_only: bool,
    /// On SIGINT/SIGTERM, how long to wait for files still open on the mount to be closed
    /// (what they hold is stored at once either way) before detaching it.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    stop_timeout: Duration,
    /// Stay in the foreground (the default and only mode; for compatibility with mount helpers).
    #[arg(short = 'f', long)]
    foreground: bool,
    /// Mount options, comma-separated, repeatable: ro, rw, allow_other, allow_root,
    /// default_permissions, uid=N, gid=N, fsname=S, noexec, nosuid, nodev, noatime, ...,
    /// and repo=PATH, node_id=ID, branch=B, autocommit=DUR, stop_timeout=DUR, threads=N (FUSE worker threads),
    /// value_cache=MIB (plain copies of large values kept for fast reads; default 1024),
    /// readdirplus (listings carry attributes: faster cold `ls -l`, slower `ls`; default off),
    /// busy_poll=US (keep the
    /// FUSE worker polling while requests come less than US µs apart; 10 to 100000, default
    /// 100, 0: off).
    #[arg(short = 'o', value_name = "OPTION")]
    options: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct Autocommit(Option<Duration>);

fn parse_autocommit(s: &str) -> Result<Autocommit, String> {
    if s == "off" || s == "0" {
        return Ok(Autocommit(None));
    }
    parse_duration(s).map(|d| Autocommit(Some(d)))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (examples: 500ms, 5s, 2m, off)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit {unit:?} in {s:?} (ms, s, m, h)"
            ));
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// What the `-o` options amount to.
#[derive(Debug, Default)]
struct Parsed {
    mount: Vec<MountOption>,
    acl: Option<SessionACL>,
    uid: Option<u32>,
    gid: Option<u32>,
    read_only: bool,
    repo: Option<PathBuf>,
    node_id: Option<String>,
    branch: Option<String>,
    autocommit: Option<Autocommit>,
    threads: Option<usize>,
    value_cache_mib: Option<u64>,
    readdirplus: Option<bool>,
    busy_poll_us: Option<u64>,
    stop_timeout: Option<Duration>,
}

fn parse_options(opts: &[String]) -> Result<Parsed, String> {
    let mut p = Parsed::default();
    for opt in opts.iter().flat_map(|o| o.split(',')).map(str::trim) {
        let (k, v) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        let need = |v: Option<&str>| v.map(str::to_owned).ok_or(format!("-o {k} needs =VALUE"));
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
            "uid" => p.uid = Some(need(v)?.parse().map_err(|_| "-o uid=N needs a number")?),
            "gid" => p.gid = Some(need(v)?.parse().map_err(|_| "-o gid=N needs a number")?),
            "repo" => p.repo = Some(PathBuf::from(need(v)?)),
            "node_id" => p.node_id = Some(need(v)?),
            "branch" => p.branch = Some(need(v)?),
            "autocommit" => p.autocommit = Some(parse_autocommit(&need(v)?)?),
            "threads" => {
                p.threads = Some(
                    need(v)?
                        .parse()
                        .map_err(|_| "-o threads=N needs a number")?,
                )
            }
            "stop_timeout" => p.stop_timeout = Some(parse_duration(&need(v)?)?),
            "readdirplus" => p.readdirplus = Some(true),
            "noreaddirplus" => p.readdirplus = Some(false),
            "busy_poll" => {
                let us: u64 = need(v)?
                    .parse()
                    .map_err(|_| "-o busy_poll=US needs a number of microseconds")?;
                // Shorter periods make the governor itself spin; longer ones keep a whole
                // CPU busy long after the application stopped.
                if us != 0 && !(10..=100_000).contains(&us) {
                    return Err(format!(
                        "-o busy_poll={us}: use 0 (off) or 10 to 100000 microseconds"
                    ));
                }
                p.busy_poll_us = Some(us);
            }
            "value_cache" => {
                let mib: u64 = need(v)?
                    .parse()
                    .map_err(|_| "-o value_cache=MIB needs a number")?;
                // In bytes it must fit a u64 (an unchecked shift would wrap to a small budget).
                mib.checked_mul(1 << 20)
                    .ok_or(format!("-o value_cache={mib}: too large"))?;
                p.value_cache_mib = Some(mib);
            }
            // fstab-only words that mount(8) passes along; they mean nothing to the daemon.
            "defaults"
            | "auto"
            | "noauto"
            | "user"
            | "users"
            | "nouser"
            | "nofail"
            | "_netdev"
            | "relatime"
            | "strictatime"
            | "lazytime"
            | "x-systemd.automount" => {}
            other => log::warn!("ignoring unknown mount option {other:?}"),
        }
    }
    Ok(p)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("gitdb-mount: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let parsed = parse_options(&cli.options)?;
    let read_only = cli.read_only || parsed.read_only;
    let repo = cli
        .repo
        .or(parsed.repo)
        .unwrap_or_else(gitdb::defaults::repo_path);
    let node = match cli.node_id.as_deref().or(parsed.node_id.as_deref()) {
        Some(id) => NodeId::new(id)?,
        None => gitdb::defaults::node_id(),
    };
    let branch = parsed.branch.unwrap_or(cli.branch);
    let autocommit = parsed.autocommit.unwrap_or(cli.autocommit).0;
    if let Some(parent) = repo.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let db = Arc::new(GitDb::open(
        &repo,
        node.clone(),
        Options {
            branch,
            read_only,
            ..Options::default()
        },
    )?);
    let mut options = MountOptions::default();
    options.fs.read_only = read_only;
    if let Some(uid) = parsed.uid {
        options.fs.uid = uid;
    }
    if let Some(gid) = parsed.gid {
        options.fs.gid = gid;
    }
    options.autocommit = autocommit;
    options.mount_options = parsed.mount;
    if read_only && !options.mount_options.contains(&MountOption::RO) {
        options.mount_options.push(MountOption::RO);
    }
    if let Some(n) = parsed.threads {
        options.threads = n.max(1);
    }
    if let Some(mib) = parsed.value_cache_mib {
        options.fs.value_cache = mib.saturating_mul(1 << 20);
    }
    if let Some(on) = parsed.readdirplus {
        options.fs.readdirplus = on;
    }
    if let Some(us) = parsed.busy_poll_us {
        options.busy_poll = (us > 0).then(|| Duration::from_micros(us));
    }
    if let Some(acl) = parsed.acl {
        options.acl = acl;
    }
    options.stop_timeout = parsed.stop_timeout.unwrap_or(cli.stop_timeout);

    // Signals go to a plain thread (signal-hook), which tells the main loop to shut down.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let signal_handle = signals.handle();
    let (sig_tx, sig_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("gitdb-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let _ = sig_tx.send(sig);
            }
        })?;

    let mounted = mount(db, &cli.mountpoint, options)?;
    log::info!(
        "gitdb-mount: node {node}, repository {}, mounted on {}{}; stop with Ctrl-C or SIGTERM",
        repo.display(),
        cli.mountpoint.display(),
        match autocommit {
            Some(d) => format!(", autocommit after {d:?} of quiet"),
            None => String::new(),
        }
    );
    loop {
        match sig_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(sig) => {
                log::info!("signal {sig}: syncing, unmounting");
                break;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if mounted.is_finished() {
                    log::info!("{} was unmounted", cli.mountpoint.display());
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    signal_handle.close();
    mounted.shutdown()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("soon").is_err());
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
            parse_options(&["stop_timeout=2s".into()])
                .expect("parse")
                .stop_timeout,
            Some(Duration::from_secs(2))
        );
        assert!(parse_options(&["stop_timeout=soon".into()]).is_err());
    }
}
