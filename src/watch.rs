//! `gitdb watch [PREFIX] [-- COMMAND...]`: block until the committed state under PREFIX
//! changes (a local commit, a merge from a peer, a commit or reset by stock git), print the new
//! head and the changed keys, and, given a command, run it once per change — what confd and
//! consul-template do for etcd and Consul, for applications that reload their config.
//!
//! The changes come from [`crate::db::follow::Follower`] (the branch ref, polled; no daemon or
//! lock needed). The command runs with the change in its environment (`GITDB_HEAD`,
//! `GITDB_PREVIOUS`, `GITDB_CHANGED`), never two at once: changes that come while it runs, or
//! within the debounce after a change, are one more run, not one run each. Its exit status is
//! reported on stderr; a failing command does not stop the watch (the next change runs it
//! again), except under `--once`, whose exit status is the command's.

use std::ffi::OsString;
use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::db::follow::{Follower, HeadChange};
use crate::db::{DiffKind, GitDb, Key, ObjectId};

/// How a watch runs.
#[derive(Debug, Clone)]
pub struct WatchPlan {
    pub prefix: Key,
    /// How often the branch ref is read.
    pub interval: Duration,
    /// How long after a change more changes are waited for, to be run as one.
    pub debounce: Duration,
    /// Stop after the first change (and its command).
    pub once: bool,
    /// With `once`: give up after this long.
    pub timeout: Option<Duration>,
    /// Program and arguments, run without a shell.
    pub command: Vec<OsString>,
}

/// Errors of a watch beyond the db's own.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("writing the changes: {0}")]
    Output(#[source] std::io::Error),
    #[error("running {command:?}: {source}")]
    Command {
        command: String,
        source: std::io::Error,
    },
    #[error("listening for SIGINT/SIGTERM: {0}")]
    Signals(std::io::Error),
}

/// How a watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEnd {
    /// SIGINT/SIGTERM, or `--once` after a change without a command.
    Stopped,
    /// `--once` ran its command, which exited with this code (or was killed: None).
    Ran(Option<i32>),
    /// `--once` saw no change within `--timeout`.
    TimedOut,
}

/// Follows `db`'s branch as `plan` says, printing each change to `out` and notes to stderr,
/// until SIGINT/SIGTERM (or what `once` asks).
pub fn run(db: &GitDb, plan: &WatchPlan, out: &mut dyn Write) -> Result<WatchEnd, WatchError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(WatchError::Signals)?;
    }
    let mut follower = Follower::new(db, plan.prefix.clone())?;
    eprintln!(
        "gitdb watch: following /{} on {} from {}",
        plan.prefix.as_str(),
        db.branch(),
        head_text(follower.seen())
    );
    let end = plan.timeout.map(|t| Instant::now() + t);
    let nap = plan.interval.min(Duration::from_millis(200));
    loop {
        // Wait for the first change, waking now and then to notice a stop.
        let first = loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(WatchEnd::Stopped);
            }
            if plan.once && end.is_some_and(|e| Instant::now() >= e) {
                return Ok(WatchEnd::TimedOut);
            }
            let until = Instant::now() + nap;
            let until = end.filter(|_| plan.once).map_or(until, |e| e.min(until));
            if let Some(change) = follower.next(plan.interval, Some(until))? {
                break change;
            }
        };
        print_change(out, &first)?;
        let mut batch = first;
        // More changes within the debounce join this run.
        let mut quiet_until = Instant::now() + plan.debounce;
        while !plan.once && !stop.load(Ordering::Relaxed) {
            match follower.next(plan.interval, Some(quiet_until))? {
                Some(more) => {
                    print_change(out, &more)?;
                    batch = join(batch, more);
                    quiet_until = Instant::now() + plan.debounce;
                }
                None => break,
            }
        }
        if plan.command.is_empty() {
            if plan.once {
                return Ok(WatchEnd::Stopped);
            }
            continue;
        }
        let code = run_command(&plan.command, &batch)?;
        if plan.once {
            return Ok(WatchEnd::Ran(code));
        }
    }
}

/// Two changes in a row as one: from the first's start to the second's end, every key either
/// touched (the later letter wins; a key added then deleted is still reported, as deleted).
fn join(mut a: HeadChange, b: HeadChange) -> HeadChange {
    for c in b.changes {
        match a.changes.iter_mut().find(|x| x.key == c.key) {
            Some(x) => x.change = c.change,
            None => a.changes.push(c),
        }
    }
    a.changes.sort_by(|x, y| x.key.cmp(&y.key));
    HeadChange {
        from: a.from,
        to: b.to,
        changes: a.changes,
    }
}

fn head_text(head: Option<ObjectId>) -> String {
    head.map_or_else(|| "no commit yet".to_owned(), |h| h.to_string())
}

fn letter(kind: DiffKind) -> char {
    match kind {
        DiffKind::Added => 'A',
        DiffKind::Modified => 'M',
        DiffKind::Deleted => 'D',
    }
}

/// `head <id>` and a `<letter> /<key>` line per key; flushed, for a pipe.
fn print_change(out: &mut dyn Write, change: &HeadChange) -> Result<(), WatchError> {
    let mut text = format!("head {}\n", head_text(change.to));
    for c in &change.changes {
        text.push_str(&format!("{} /{}\n", letter(c.change), c.key));
    }
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(WatchError::Output)
}

/// Runs the command for `change` and waits for it; returns its exit code.
fn run_command(command: &[OsString], change: &HeadChange) -> Result<Option<i32>, WatchError> {
    let shown = command
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let changed: Vec<String> = change
        .changes
        .iter()
        .map(|c| format!("/{}", c.key))
        .collect();
    let status = Command::new(&command[0])
        .args(&command[1..])
        .env(
            "GITDB_HEAD",
            change.to.map(|h| h.to_string()).unwrap_or_default(),
        )
        .env(
            "GITDB_PREVIOUS",
            change.from.map(|h| h.to_string()).unwrap_or_default(),
        )
        .env("GITDB_CHANGED", changed.join("\n"))
        .status()
        .map_err(|source| WatchError::Command {
            command: shown.clone(),
            source,
        })?;
    eprintln!(
        "gitdb watch: `{shown}` for head {}: {status}",
        head_text(change.to)
    );
    Ok(status.code())
}
