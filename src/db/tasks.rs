//! The background work every node needs, mounted or headless: the *refresh* watcher (every
//! `refresh_interval`, [`GitDb::refresh`] adopts commits made behind the node's back — stock
//! git, a `gitdb` client writing the repository itself — and a read-only handle follows its
//! writer) and *autocommit* (the working layer is committed once no change came for `quiet`).
//! Owned by the db, not by the mount, so `gitdb serve` has them too.
//!
//! [`GitDb::start_tasks`] starts them and returns a [`DbTasks`] guard that stops and joins
//! them when dropped, as mini-redis's `DbDropGuard` stops its purge task. The threads hold the
//! db weakly: a guard that is leaked does not keep the db open.
//!
//! Autocommit's quiet period is measured from the last *activity*: every working-layer write
//! notes it (in `append`, the one road of set, delete and rename into the journal), and a
//! layer above reports what it has not handed to the db yet ([`GitDb::note_activity`]: the
//! mount, for a file being created or written), so a half-written file is not committed
//! earlier than the mount alone would have. A failed autocommit is kept here, in the db, for
//! `status`'s `last_error` ([`Status::last_error`](crate::db::Status)); the next one that
//! succeeds clears it. No layer above is called.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::db::failures::{FailedOp, LastErrors};
use crate::db::{DbError, GitDb, Result};
use crate::periodic::Periodic;

/// Which tasks to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskOptions {
    /// How often the branch ref is re-read (None: never).
    pub refresh_interval: Option<Duration>,
    /// Commit after this much quiet (None: never on its own).
    pub autocommit: Option<Duration>,
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            refresh_interval: Some(DEFAULT_REFRESH),
            autocommit: None,
        }
    }
}

/// How often a node re-reads the branch ref unless told otherwise: a commit by stock git
/// shows within half a second, at the cost of one ref read (a file stat) per period.
pub const DEFAULT_REFRESH: Duration = Duration::from_millis(500);

/// The name autocommit's failures go by in `status`.
const AUTOCOMMIT: &str = "autocommit";

/// What the tasks share with the db (a field of [`GitDb`]).
#[derive(Default)]
pub(super) struct TaskState {
    /// Unix ms of the last activity (see the module docs); 0: none yet.
    last_activity_ms: AtomicU64,
    /// The tasks' last failures, for `status`. A leaf lock, taken alone.
    errors: Mutex<LastErrors>,
}

/// The running tasks; dropping it stops them and waits for them to end (a commit under way
/// finishes first).
pub struct DbTasks {
    threads: Vec<Periodic>,
}

impl Drop for DbTasks {
    fn drop(&mut self) {
        // Every thread is told before any is waited for, so they end together.
        for t in &self.threads {
            t.signal_stop();
        }
        self.threads.clear();
    }
}

impl GitDb {
    /// Starts the tasks `options` asks for. Autocommit is not started on a read-only handle
    /// (it could never commit).
    pub fn start_tasks(self: &Arc<Self>, options: TaskOptions) -> Result<DbTasks> {
        let mut threads = Vec::new();
        let spawned = |name: &'static str| move |source| DbError::Thread { name, source };
        if let Some(interval) = options.refresh_interval {
            // Zero would spin; one ref read per 10 ms is already far more than needed.
            let interval = interval.max(Duration::from_millis(10));
            let db = Arc::downgrade(self);
            let name = "gitdb-refresh";
            threads.push(
                Periodic::every(name, interval, move |_| refresh(&db)).map_err(spawned(name))?,
            );
        }
        match options.autocommit {
            Some(_) if self.is_read_only() => {
                log::info!(
                    "autocommit off: {} is open read-only",
                    self.git_dir().display()
                )
            }
            Some(quiet) => {
                let db = Arc::downgrade(self);
                // Often enough to commit soon after the quiet ends, rarely enough to cost
                // nothing while nothing changes.
                let tick = (quiet / 4).clamp(Duration::from_millis(20), Duration::from_millis(250));
                let name = "gitdb-autocommit";
                threads.push(
                    Periodic::every(name, tick, move |_| autocommit(&db, quiet))
                        .map_err(spawned(name))?,
                );
            }
            None => {}
        }
        Ok(DbTasks { threads })
    }

    /// Something changed that autocommit's quiet period should wait for, although it may not
    /// be in the working layer yet (a file the mount is creating or writing). One atomic store.
    pub fn note_activity(&self) {
        self.tasks
            .last_activity_ms
            .store(crate::defaults::now_ms(), Ordering::Relaxed);
    }

    /// Unix ms of the last write to the working layer or [`GitDb::note_activity`] (0: none).
    pub fn last_activity_ms(&self) -> u64 {
        self.tasks.last_activity_ms.load(Ordering::Relaxed)
    }

    /// The latest failure of the db's own tasks still standing (see [`crate::db::failures`]).
    pub fn task_error(&self) -> Option<FailedOp> {
        self.lock_task_errors().latest().cloned()
    }

    fn lock_task_errors(&self) -> std::sync::MutexGuard<'_, LastErrors> {
        self.tasks.errors.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn refresh(db: &Weak<GitDb>) {
    let Some(db) = db.upgrade() else { return };
    match db.refresh() {
        Ok(Some(m)) => log::info!("adopted head {:?} (was {:?})", m.new, m.old),
        Ok(None) => {}
        Err(e) => log::warn!("refresh: {e}"),
    }
}

fn autocommit(db: &Weak<GitDb>, quiet: Duration) {
    let Some(db) = db.upgrade() else { return };
    let now = crate::defaults::now_ms();
    if !db.is_dirty() || now.saturating_sub(db.last_activity_ms()) < quiet.as_millis() as u64 {
        return;
    }
    match db.commit(AUTOCOMMIT, now) {
        Ok(outcome) => {
            db.lock_task_errors().succeeded(AUTOCOMMIT);
            log::info!("autocommit: {outcome:?}")
        }
        Err(e) => {
            let msg = format!("autocommit: {e}");
            log::warn!("{msg}");
            db.lock_task_errors().failed(AUTOCOMMIT, msg, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{NodeId, Options};
    use std::path::Path;
    use std::process::Command;
    use std::time::Instant;

    fn open(dir: &Path) -> Arc<GitDb> {
        let db = GitDb::open(
            dir.join("repo.git"),
            NodeId::new("n1").expect("node id"),
            Options::default(),
        )
        .expect("open");
        Arc::new(db)
    }

    /// Polls `cond` until it holds or `within` passes; whether it held.
    fn wait_until(within: Duration, cond: impl Fn() -> bool) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        cond()
    }

    fn only_autocommit(quiet: Duration) -> TaskOptions {
        TaskOptions {
            refresh_interval: None,
            autocommit: Some(quiet),
        }
    }

    #[test]
    fn autocommit_waits_for_quiet_then_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        let quiet = Duration::from_millis(300);
        let _tasks = db.start_tasks(only_autocommit(quiet)).expect("start");
        // Writes, then reports of activity not in the db yet, keep coming faster than the
        // quiet period for well over one: nothing is committed meanwhile.
        let busy_until = Instant::now() + quiet * 3;
        let mut n = 0;
        while Instant::now() < busy_until {
            if n % 2 == 0 {
                db.set(&format!("k{n}"), b"v").expect("set");
            } else {
                db.note_activity();
            }
            n += 1;
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(db.head(), None, "committed while changes kept coming");
        }
        let last = Instant::now();
        assert!(
            wait_until(Duration::from_secs(10), || db.head().is_some()),
            "no autocommit after the quiet period"
        );
        assert!(last.elapsed() >= quiet - Duration::from_millis(60));
        assert!(!db.is_dirty());
        let log = db.log(1).expect("log");
        assert_eq!(log[0].summary, "autocommit");
        assert_eq!(db.task_error(), None);
    }

    #[test]
    fn dropping_the_guard_stops_the_tasks_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        let tasks = db
            .start_tasks(TaskOptions {
                // Long periods: a drop must not wait them out.
                refresh_interval: Some(Duration::from_secs(3600)),
                autocommit: Some(Duration::from_millis(20)),
            })
            .expect("start");
        let start = Instant::now();
        drop(tasks);
        assert!(start.elapsed() < Duration::from_secs(2), "drop waited");
        db.set("k", b"v").expect("set");
        // Many times the quiet period and tick: a running autocommit would have committed.
        std::thread::sleep(Duration::from_millis(400));
        assert!(db.is_dirty(), "autocommit ran after its guard was dropped");
        assert_eq!(db.head(), None);
        // The threads held the db weakly and are gone: this is the last handle.
        assert_eq!(Arc::strong_count(&db), 1);
    }

    #[test]
    fn a_failed_autocommit_shows_in_status_until_one_succeeds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        db.set("k", b"v").expect("set");
        // The branch ref cannot be written while another writer (as git sees it) holds its
        // lock file.
        let lock = db.git_dir().join("refs/heads/main.lock");
        std::fs::create_dir_all(lock.parent().expect("parent")).expect("refs/heads");
        std::fs::write(&lock, "").expect("lock the ref");
        let tasks = db
            .start_tasks(only_autocommit(Duration::from_millis(20)))
            .expect("start");
        assert!(
            wait_until(Duration::from_secs(10), || db.task_error().is_some()),
            "no failure recorded"
        );
        let failed = db.status().last_error.expect("status shows it");
        assert_eq!(failed.op, "autocommit");
        assert!(failed.message.starts_with("autocommit: "), "{failed:?}");
        std::fs::remove_file(&lock).expect("unlock");
        assert!(
            wait_until(Duration::from_secs(10), || db.head().is_some()),
            "no autocommit once the ref could be written"
        );
        assert!(wait_until(Duration::from_secs(10), || db
            .task_error()
            .is_none()));
        drop(tasks);
        assert_eq!(db.status().last_error, None);
    }

    #[test]
    fn refresh_adopts_a_commit_made_by_stock_git() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        db.set("a", b"1").expect("set");
        db.commit("first", 1_000).expect("commit");
        let _tasks = db
            .start_tasks(TaskOptions {
                refresh_interval: Some(Duration::from_millis(20)),
                autocommit: None,
            })
            .expect("start");
        let work = dir.path().join("work");
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .args(args)
                .env("GIT_AUTHOR_NAME", "op")
                .env("GIT_AUTHOR_EMAIL", "op@x")
                .env("GIT_COMMITTER_NAME", "op")
                .env("GIT_COMMITTER_EMAIL", "op@x")
                .output()
                .expect("git is installed");
            assert!(out.status.success(), "git {args:?}: {out:?}");
        };
        let repo = db.git_dir().to_str().expect("utf-8 path").to_owned();
        let w = work.to_str().expect("utf-8 path").to_owned();
        git(&["clone", "-q", &repo, &w]);
        std::fs::write(work.join("b"), "2").expect("write");
        git(&["-C", &w, "add", "b"]);
        git(&["-C", &w, "commit", "-qm", "by stock git"]);
        git(&["-C", &w, "push", "-q", "origin", "HEAD:main"]);
        assert!(
            wait_until(Duration::from_secs(10), || db
                .get("b")
                .is_ok_and(|v| v.as_deref() == Some(&b"2"[..]))),
            "the stock-git commit was not adopted"
        );
        assert_eq!(db.log(1).expect("log")[0].summary, "by stock git");
    }
}
