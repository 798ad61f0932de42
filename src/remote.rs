//! A plain git remote as hub and backup (`--remote URL`, repeatable): nodes that cannot reach
//! each other (behind NAT, in different networks) converge through an ordinary git server, and
//! the remote is an off-site copy of the whole history.
//!
//! Every interval, and after each local commit, the node syncs with each remote in turn:
//! 1. `git fetch URL +refs/heads/<branch>:refs/gitdb/remotes/<id>/<branch>` (the ref keeps what
//!    was fetched alive against `git gc`);
//! 2. merges that head into its own with its merge strategy (the same deterministic merge as
//!    gossip's, so the heads converge to the commit gossip would give);
//! 3. `git push URL <head>:refs/heads/<branch>`, never forced. A rejected push (someone pushed
//!    meanwhile) is fetched, merged and pushed again, a few times.
//!
//! Through the git CLI, so every transport (`file://`, `ssh://`, `https://`, `git://`) and
//! every credential helper the operator's git is set up with works. Git runs with
//! `GIT_TERMINAL_PROMPT=0` and ssh in batch mode (nothing waits for a password on a terminal
//! nobody watches), and each call is killed after `--remote-timeout`. All of it runs on one
//! thread of its own: a remote that is down or hangs delays only the next sync with it, never
//! a local read, write or commit. A [`RemoteSync`] owns that thread and stops it on drop.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

use crate::db::{GitDb, HeadOrigin, ObjectId};
use crate::merge::{MergeOutcome, Strategy};
use crate::periodic::{Periodic, Starting, Stop};

/// Pushes rejected in a row (someone else pushed between our fetch and our push) before a
/// sync gives up until the next one.
const PUSH_ATTEMPTS: usize = 5;

/// How the node syncs with its remotes.
#[derive(Clone)]
pub struct RemoteConfig {
    pub urls: Vec<String>,
    pub interval: Duration,
    /// The longest one git call may take.
    pub timeout: Duration,
    pub strategy: Arc<Strategy>,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("urls", &self.urls)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why one sync with one remote failed (logged and counted; the next sync tries again).
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("git {what} {url}: {message}")]
    Git {
        what: &'static str,
        url: String,
        message: String,
    },
    #[error("git {what} {url}: no answer within {timeout:?}")]
    Timeout {
        what: &'static str,
        url: String,
        timeout: Duration,
    },
    #[error("running git: {0}")]
    Spawn(std::io::Error),
    #[error("merging {url}'s head {head}: {source}")]
    Merge {
        url: String,
        head: ObjectId,
        source: Box<crate::merge::MergeError>,
    },
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("pushing to {url}: rejected {PUSH_ATTEMPTS} times in a row (others keep pushing)")]
    Busy { url: String },
    #[error("starting the remote thread: {0}")]
    Thread(std::io::Error),
}

/// What the syncs have done, for the metrics.
#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
    pushes: AtomicU64,
    /// Unix milliseconds of the last sync that succeeded with every remote (0: none yet).
    last_ok_ms: AtomicU64,
}

/// The running sync: a thread, stopped and joined on drop.
pub struct RemoteSync {
    _thread: Periodic,
}

impl RemoteSync {
    /// Starts syncing `db` with `cfg.urls`: once now, then every interval and after each
    /// local commit.
    pub fn start(db: Arc<GitDb>, cfg: RemoteConfig) -> Result<RemoteSync, RemoteError> {
        let starting = Starting::new();
        {
            // In place before the first sync looks at the head, so no commit is missed.
            let waker = starting.waker();
            db.subscribe_with(move |ev| {
                if ev.origin == HeadOrigin::LocalCommit {
                    // Commits in a burst: one sync after the last of them (wakes coalesce).
                    return waker.wake();
                }
                !waker.is_stopped()
            });
        }
        let counters = Arc::new(Counters::default());
        {
            let counters = Arc::downgrade(&counters);
            db.add_metrics(Box::new(move |scrape| {
                if let Some(c) = counters.upgrade() {
                    scrape.counter(
                        "remote_syncs_total",
                        "Syncs with every --remote that succeeded",
                        c.ok.load(Ordering::Relaxed),
                    );
                    scrape.counter(
                        "remote_failures_total",
                        "Syncs with one --remote that failed",
                        c.failed.load(Ordering::Relaxed),
                    );
                    scrape.counter(
                        "remote_pushes_total",
                        "Pushes to the remotes that moved their branch",
                        c.pushes.load(Ordering::Relaxed),
                    );
                    let last = c.last_ok_ms.load(Ordering::Relaxed);
                    if last > 0 {
                        scrape.gauge(
                            "remote_last_sync_time_seconds",
                            "When a sync with every --remote last succeeded, as Unix time",
                            (last / 1000) as i64,
                        );
                    }
                }
            }));
        }
        let thread = starting
            .spawn("gitdb-remote", move |stop| run(&db, &cfg, stop, &counters))
            .map_err(RemoteError::Thread)?;
        Ok(RemoteSync { _thread: thread })
    }
}

fn run(db: &GitDb, cfg: &RemoteConfig, stop: &Stop, counters: &Counters) {
    log::info!(
        "remote: syncing with {} every {:?} and after each commit",
        cfg.urls.join(", "),
        cfg.interval
    );
    loop {
        let mut all_ok = true;
        for url in &cfg.urls {
            if stop.is_stopped() {
                return;
            }
            match sync_one(db, cfg, url, counters) {
                Ok(()) => {}
                Err(e) => {
                    all_ok = false;
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    log::warn!("remote: {e}");
                }
            }
        }
        if all_ok {
            counters.ok.fetch_add(1, Ordering::Relaxed);
            counters
                .last_ok_ms
                .store(crate::defaults::now_ms(), Ordering::Relaxed);
        }
        // Until the interval is up or a commit wakes it.
        if stop.wait(cfg.interval) {
            return;
        }
    }
}

/// The ref a remote's head is fetched into: one per URL, named by a hash of it (a URL is not
/// a valid ref name).
fn tracking_ref(url: &str, branch: &str) -> String {
    let digest = crc32fast::hash(url.as_bytes());
    format!("refs/gitdb/remotes/{digest:08x}/{branch}")
}

/// Fetch, merge, push, for one remote.
fn sync_one(
    db: &GitDb,
    cfg: &RemoteConfig,
    url: &str,
    counters: &Counters,
) -> Result<(), RemoteError> {
    let git_dir = db.git_dir().to_owned();
    let branch = db.branch().to_owned();
    let tracking = tracking_ref(url, &branch);
    for _ in 0..PUSH_ATTEMPTS {
        let theirs = fetch(&git_dir, cfg, url, &branch, &tracking)?;
        if let Some(theirs) = theirs
            && Some(theirs) != db.head()
        {
            let outcome =
                crate::merge::merge(db, theirs, None, &cfg.strategy, crate::defaults::now_ms())
                    .map_err(|source| RemoteError::Merge {
                        url: url.to_owned(),
                        head: theirs,
                        source: Box::new(source),
                    })?;
            if !matches!(outcome, MergeOutcome::NoOp) {
                log::info!("remote: {url}: {outcome:?}");
            }
        }
        let Some(ours) = db.head() else {
            return Ok(());
        };
        if Some(ours) == theirs {
            return Ok(());
        }
        // Their head may hold beyond ours only merges of writes ours holds too (the merge was
        // a no-op, yet ours does not descend from theirs): then ours replaces it, as a peer
        // would adopt it over gossip, by a push that fails if the remote moved meanwhile.
        let lease = match theirs {
            Some(t) if !db.descends_from(ours, t)? => Some(t),
            _ => None,
        };
        match push(&git_dir, cfg, url, ours, &branch, lease)? {
            Pushed::Done => {
                counters.pushes.fetch_add(1, Ordering::Relaxed);
                // What the remote holds now: the next fetch starts from it.
                let _ = git(
                    &git_dir,
                    cfg,
                    "update-ref",
                    url,
                    &["update-ref", &tracking, &ours.to_string()],
                );
                return Ok(());
            }
            Pushed::Rejected(why) => log::info!("remote: {url}: push rejected ({why}); fetching"),
        }
    }
    Err(RemoteError::Busy {
        url: url.to_owned(),
    })
}

/// Fetches the remote's branch into `tracking` (one connection to the remote); its head, or
/// None if the remote has no such branch yet.
fn fetch(
    git_dir: &Path,
    cfg: &RemoteConfig,
    url: &str,
    branch: &str,
    tracking: &str,
) -> Result<Option<ObjectId>, RemoteError> {
    let refspec = format!("+refs/heads/{branch}:{tracking}");
    let args = [
        "fetch",
        "--quiet",
        "--no-tags",
        "--no-write-fetch-head",
        "--",
        url,
        &refspec,
    ];
    match git(git_dir, cfg, "fetch", url, &args) {
        Ok(_) => {}
        // A new hub: nothing to merge, and the push creates the branch.
        Err(RemoteError::Git { message, .. }) if message.contains("couldn't find remote ref") => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    }
    let id = git(
        git_dir,
        cfg,
        "rev-parse",
        url,
        &["rev-parse", "--verify", "--quiet", tracking],
    )?;
    let id = id.trim();
    ObjectId::from_hex(id.as_bytes())
        .map(Some)
        .map_err(|e| RemoteError::Git {
            what: "rev-parse",
            url: url.to_owned(),
            message: format!("odd object id {id:?} in {tracking}: {e}"),
        })
}

enum Pushed {
    Done,
    /// Not a fast-forward for the remote, or its hooks refused: fetch and merge first.
    Rejected(String),
}

fn push(
    git_dir: &Path,
    cfg: &RemoteConfig,
    url: &str,
    head: ObjectId,
    branch: &str,
    lease: Option<ObjectId>,
) -> Result<Pushed, RemoteError> {
    let refspec = format!("{head}:refs/heads/{branch}");
    let lease = lease.map(|old| format!("--force-with-lease=refs/heads/{branch}:{old}"));
    let mut args = vec!["push", "--quiet", "--porcelain"];
    args.extend(lease.as_deref());
    args.extend(["--", url, &refspec]);
    match git(git_dir, cfg, "push", url, &args) {
        Ok(_) => Ok(Pushed::Done),
        Err(RemoteError::Git { message, .. })
            if message.contains("rejected")
                || message.contains("fetch first")
                || message.contains("non-fast-forward") =>
        {
            Ok(Pushed::Rejected(
                message
                    .lines()
                    .find(|l| l.contains("rejected"))
                    .unwrap_or("")
                    .trim()
                    .to_owned(),
            ))
        }
        Err(e) => Err(e),
    }
}

/// Runs `git --git-dir GIT_DIR ARGS` with no terminal and at most `cfg.timeout`; its stdout.
fn git(
    git_dir: &Path,
    cfg: &RemoteConfig,
    what: &'static str,
    url: &str,
    args: &[&str],
) -> Result<String, RemoteError> {
    let out_file = tempfile::tempfile().map_err(RemoteError::Spawn)?;
    let err_file = tempfile::tempfile().map_err(RemoteError::Spawn)?;
    let mut cmd = Command::new("git");
    crate::children::die_with_parent(&mut cmd);
    cmd.arg("--git-dir")
        .arg(git_dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        // Messages are matched below ("rejected", "couldn't find remote ref"): untranslated.
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(out_file.try_clone().map_err(RemoteError::Spawn)?)
        .stderr(err_file.try_clone().map_err(RemoteError::Spawn)?);
    if std::env::var_os("GIT_SSH_COMMAND").is_none() {
        cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(RemoteError::Spawn)?;
    let status = match child
        .wait_timeout(cfg.timeout)
        .map_err(RemoteError::Spawn)?
    {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RemoteError::Timeout {
                what,
                url: url.to_owned(),
                timeout: cfg.timeout,
            });
        }
    };
    let read = |mut f: std::fs::File| {
        use std::io::{Read, Seek};
        let mut s = String::new();
        let _ = f.rewind().and_then(|()| f.read_to_string(&mut s));
        s
    };
    let stdout = read(out_file);
    if status.success() {
        log::debug!("remote: git {what} {url}: {:?}", started.elapsed());
        return Ok(stdout);
    }
    let stderr = read(err_file);
    Err(RemoteError::Git {
        what,
        url: url.to_owned(),
        message: format!("{status}: {}{}", stdout.trim(), stderr.trim()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_url_has_its_own_valid_tracking_ref() {
        let a = tracking_ref("file:///srv/hub.git", "main");
        let b = tracking_ref("git://hub/x.git", "main");
        assert_ne!(a, b);
        assert!(a.starts_with("refs/gitdb/remotes/") && a.ends_with("/main"));
        assert!(gix::refs::FullName::try_from(a.as_str()).is_ok());
    }
}
