//! The control directory `/.gitdb/`: how a shell talks to the store without a client binary.
//!
//! - `ctl` (write-only): `commit [message]`, `rollback`, `sync` (a gossip round now, returning
//!   when it ends). Each written line is one command, executed when the write arrives, so a
//!   failing command fails that `write(2)` (EINVAL for an unknown command, ENOTCONN for `sync`
//!   on a node without peers, EHOSTUNREACH when a round reached none, ENOSPC, EDQUOT or EROFS
//!   when the disk refused what a commit writes, EIO for other failures)
//!   and the reason shows in `status` as `last_error`.
//! - `status` (JSON), `head` (one line), `log` (one commit per line), `conflicts` (one key per
//!   line; empty until merges exist), `metrics` (Prometheus text): generated when opened, served with direct I/O so the page
//!   cache never shows a stale copy.
//! - `history/<commit-id>/…`: a read-only view of the tree at that commit; writes get EROFS.
//!
//! The name `.gitdb` is reserved at the root of the key space (see [`crate::db::key`]), so these
//! paths never collide with keys.

use super::errno::ToErrno;
use crate::db::{GitDb, ObjectId, Status};

/// The control directory's name at the mount root.
pub const DIR: &str = ".gitdb";
/// How many commits `log` shows and `history/` lists.
pub const LOG_LEN: usize = 100;

/// A node of the control directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlNode {
    Dir,
    Ctl,
    Status,
    Head,
    Log,
    Conflicts,
    /// The node's metrics, Prometheus text format (see [`crate::db::metrics`]).
    Metrics,
    HistoryDir,
    /// `history/<id>/<path>` (`path` empty: the commit's root).
    History {
        commit: ObjectId,
        path: String,
    },
}

/// The files and directories directly in `/.gitdb/`.
pub const ENTRIES: [(&str, bool); 7] = [
    ("ctl", false),
    ("status", false),
    ("head", false),
    ("log", false),
    ("conflicts", false),
    ("metrics", false),
    ("history", true),
];

/// Errors of a `ctl` command.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("unknown command {0:?} (expected `commit [message]`, `rollback` or `sync`)")]
    Unknown(String),
    #[error("command is not UTF-8")]
    NotUtf8,
    #[error("{command} failed: {source}")]
    Failed {
        command: &'static str,
        source: crate::db::DbError,
    },
}

impl CtlError {
    pub fn errno(&self) -> i32 {
        match self {
            CtlError::Unknown(_) | CtlError::NotUtf8 => libc::EINVAL,
            CtlError::Failed { source, .. }
                if matches!(
                    source.errno(),
                    // A full disk is the operator's to fix, and must look like one: a
                    // commit that failed for want of space succeeds once space returns.
                    libc::ENOSPC | libc::EDQUOT | libc::EROFS | libc::ENOTCONN | libc::EHOSTUNREACH
                ) =>
            {
                source.errno()
            }
            CtlError::Failed { .. } => libc::EIO,
        }
    }
}

/// Whether a mount path is the control directory or anything below it.
pub fn is_under(path: &str) -> bool {
    path == DIR || path.strip_prefix(DIR).is_some_and(|r| r.starts_with('/'))
}

/// Classifies a mount path at or below `.gitdb`; `None` if it is not a control path or does
/// not exist.
pub fn parse(path: &str) -> Option<CtlNode> {
    let rest = path.strip_prefix(DIR)?;
    if rest.is_empty() {
        return Some(CtlNode::Dir);
    }
    let rest = rest.strip_prefix('/')?;
    Some(match rest {
        "ctl" => CtlNode::Ctl,
        "status" => CtlNode::Status,
        "head" => CtlNode::Head,
        "log" => CtlNode::Log,
        "conflicts" => CtlNode::Conflicts,
        "metrics" => CtlNode::Metrics,
        "history" => CtlNode::HistoryDir,
        _ => {
            let under = rest.strip_prefix("history/")?;
            let (id, path) = under.split_once('/').unwrap_or((under, ""));
            if id.len() != 40 {
                return None;
            }
            let commit = ObjectId::from_hex(id.as_bytes()).ok()?;
            CtlNode::History {
                commit,
                path: path.to_owned(),
            }
        }
    })
}

pub use crate::db::{FailedOp, LastErrors};

/// `status` lists at most this many uncommitted changes (`dirty_count` has them all): it is
/// generated at every open, and a monitor polling it should not read megabytes after a bulk
/// load (100,000 dirty keys made 6.1 MB, 77 ms per read).
pub const STATUS_DIRTY_MAX: usize = 1000;

/// The JSON document of `status`: the db's status plus what the mount knows.
#[derive(serde::Serialize)]
struct StatusDoc {
    /// Its `last_error` is the latest of the db's tasks' and the mount's own.
    #[serde(flatten)]
    db: Status,
    conflicts: Vec<String>,
    /// Empty directories made with mkdir, kept by the mount only (git cannot store them).
    empty_dirs: Vec<String>,
    #[serde(flatten)]
    stats: super::stats::Snapshot,
}

/// Contents of a generated control file.
pub fn render(
    node: &CtlNode,
    db: &GitDb,
    last_error: Option<&FailedOp>,
    empty_dirs: Vec<String>,
    stats: super::stats::Snapshot,
) -> Vec<u8> {
    match node {
        CtlNode::Status => {
            let mut status = db.status_summary(STATUS_DIRTY_MAX);
            if let Some(mine) = last_error
                && status
                    .last_error
                    .as_ref()
                    .is_none_or(|db| db.at_ms <= mine.at_ms)
            {
                status.last_error = Some(mine.clone());
            }
            let doc = StatusDoc {
                db: status,
                conflicts: conflicts(db),
                empty_dirs,
                stats,
            };
            let mut out = serde_json::to_vec_pretty(&doc).unwrap_or_else(|e| {
                format!("{{\"error\": \"cannot render status: {e}\"}}").into_bytes()
            });
            out.push(b'\n');
            out
        }
        CtlNode::Head => match db.head() {
            Some(h) => format!("{h}\n").into_bytes(),
            None => Vec::new(),
        },
        CtlNode::Log => match db.log(LOG_LEN) {
            Ok(entries) => entries
                .iter()
                .map(|e| format!("{} {} {} {}\n", e.id, e.seconds, e.author, e.summary))
                .collect::<String>()
                .into_bytes(),
            Err(e) => format!("error: {e}\n").into_bytes(),
        },
        CtlNode::Metrics => db.metrics_text().into_bytes(),
        CtlNode::Conflicts => conflicts(db)
            .iter()
            .map(|k| format!("{k}\n"))
            .collect::<String>()
            .into_bytes(),
        _ => Vec::new(),
    }
}

/// Keys left in conflict by KeepBoth merges at the head (as `/key`), as the merge layer
/// records them in merge commits; empty if they cannot be read (logged).
fn conflicts(db: &GitDb) -> Vec<String> {
    match db.conflicts() {
        Ok(keys) => keys.into_iter().map(|k| format!("/{k}")).collect(),
        Err(e) => {
            log::warn!("cannot read the conflict list: {e}");
            Vec::new()
        }
    }
}

/// Runs the commands in `data` (one per line). What they change reaches the mount's caches
/// through the db's news (see [`GitDb::subscribe_with`]). Returns how many ran.
pub fn execute(db: &GitDb, data: &[u8], now_ms: u64) -> Result<usize, CtlError> {
    let text = std::str::from_utf8(data).map_err(|_| CtlError::NotUtf8)?;
    let mut ran = 0;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (cmd, arg) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match cmd {
            "commit" => {
                let msg = match arg.trim() {
                    "" => "commit from the mount",
                    m => m,
                };
                let outcome = db.commit(msg, now_ms).map_err(|source| CtlError::Failed {
                    command: "commit",
                    source,
                })?;
                log::info!("ctl: commit: {outcome:?}");
            }
            "sync" if arg.trim().is_empty() => {
                let summary = db.sync_with_peers().map_err(|source| CtlError::Failed {
                    command: "sync",
                    source,
                })?;
                log::info!("ctl: sync: {summary}");
            }
            "rollback" => {
                let n = db.rollback().map_err(|source| CtlError::Failed {
                    command: "rollback",
                    source,
                })?;
                log::info!("ctl: rollback dropped {n} change(s)");
            }
            _ => return Err(CtlError::Unknown(line.to_owned())),
        }
        ran += 1;
    }
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_control_paths() {
        assert_eq!(parse(".gitdb"), Some(CtlNode::Dir));
        assert_eq!(parse(".gitdb/ctl"), Some(CtlNode::Ctl));
        assert_eq!(parse(".gitdb/nope"), None);
        assert_eq!(parse(".gitdbx"), None);
        assert_eq!(parse("a"), None);
        let id = "0123456789abcdef0123456789abcdef01234567";
        match parse(&format!(".gitdb/history/{id}/a/b")) {
            Some(CtlNode::History { commit, path }) => {
                assert_eq!(commit.to_string(), id);
                assert_eq!(path, "a/b");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(parse(".gitdb/history/short"), None);
        assert!(is_under(".gitdb") && is_under(".gitdb/x") && !is_under(".gitdbx"));
    }

    #[test]
    fn commands_commit_rollback_and_fail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = crate::db::NodeId::new("n1").expect("node");
        let db = GitDb::open(dir.path().join("r.git"), node, Default::default()).expect("open");
        db.set("a", b"1").expect("set");
        assert_eq!(
            execute(&db, b"commit first one\n", 1_000).expect("commit"),
            1
        );
        assert!(db.head().is_some());
        assert_eq!(db.log(1).expect("log")[0].summary, "first one");
        db.set("b", b"2").expect("set");
        assert_eq!(execute(&db, b"rollback", 2_000).expect("rollback"), 1);
        assert!(db.get("b").expect("get").is_none());
        let err = execute(&db, b"frobnicate", 3_000).expect_err("unknown");
        assert_eq!(err.errno(), libc::EINVAL);
        assert_eq!(
            execute(&db, &[0xff], 3_000).expect_err("utf8").errno(),
            libc::EINVAL
        );
        let stats = || crate::fuse::stats::Stats::default().snapshot();
        let head = render(&CtlNode::Head, &db, None, Vec::new(), stats());
        assert_eq!(head.len(), 41);
        let mut errors = LastErrors::default();
        errors.failed("autocommit", "boom".into(), 1_796_277_921_000);
        errors.failed("ctl", "bang".into(), 1_796_277_922_000);
        errors.succeeded("ctl");
        let status: serde_json::Value = serde_json::from_slice(&render(
            &CtlNode::Status,
            &db,
            errors.latest(),
            Vec::new(),
            stats(),
        ))
        .expect("json");
        assert_eq!(status["last_error"]["op"], "autocommit");
        assert_eq!(status["last_error"]["message"], "boom");
        assert_eq!(status["last_error"]["at"], "2026-12-03T06:05:21.000Z");
        errors.succeeded("autocommit");
        assert_eq!(errors.latest(), None);
        assert_eq!(status["requests"]["lookup"], 0);
        assert_eq!(status["page_cache"]["prefilled"], 0);
        assert_eq!(status["node"], "n1");
    }
}
