//! Runs the door's commands against a db: what the daemon does for a client, and what the
//! client does itself when no daemon holds the repository, so the two print the same bytes.

use crate::db::{CommitOutcome, DbError, NodeKind};
use crate::{GitDb, Key};

use super::protocol::{Command, ErrorKind, Response};

/// Runs `command` on `db`. Writes (`set`, `rm`) are made durable (`sync`) before the answer,
/// and announced on the db's news channel so that a mount on the same db drops its kernel
/// caches of the changed keys (its own writes need no such news; another client's do).
pub fn execute(db: &GitDb, command: &Command) -> Response {
    match command {
        Command::Get { key } => match db.get(key) {
            Ok(Some(v)) => Response::Value(v.to_vec()),
            Ok(None) => missing(format!("no such key: {}", display_key(key))),
            Err(e @ DbError::IsDirectory { .. }) => missing(e),
            Err(e) => failed(e),
        },
        Command::Set { key, value, mode } => match db.set_with_mode(key, value, *mode) {
            Ok(()) => settle(db, key),
            Err(e) => failed(e),
        },
        Command::Rm { key, recursive } => {
            let r = if *recursive {
                db.delete_prefix(key)
            } else {
                db.delete(key)
            };
            match r {
                Ok(()) => settle(db, key),
                Err(e @ DbError::NotFound { .. }) => missing(e),
                Err(e) => failed(e),
            }
        }
        Command::Ls { prefix, recursive } => {
            let listed = if *recursive {
                db.list_recursive(prefix)
                    .map(|all| all.into_iter().map(|(k, _)| format!("/{k}")).collect())
            } else {
                db.list(prefix).map(|children| {
                    children
                        .into_iter()
                        .map(|e| match e.kind {
                            NodeKind::Dir => format!("{}/", e.name),
                            NodeKind::Value(_) => e.name,
                        })
                        .collect()
                })
            };
            match listed {
                Ok(lines) => Response::Lines(lines),
                Err(e @ (DbError::NotFound { .. } | DbError::NotADirectory { .. })) => missing(e),
                Err(e) => failed(e),
            }
        }
        Command::Commit { message } => match db.commit(message, crate::defaults::now_ms()) {
            Ok(CommitOutcome::Committed { id, .. }) => Response::Committed { id: id.to_string() },
            Ok(CommitOutcome::NothingToCommit) => Response::NothingToCommit,
            Err(e) => failed(e),
        },
        Command::Rollback => match db.rollback() {
            Ok(n) => Response::RolledBack { dropped: n as u64 },
            Err(e) => failed(e),
        },
        Command::Metrics => Response::Metrics {
            text: db.metrics_text(),
        },
        Command::Status => match serde_json::to_string_pretty(&db.status()) {
            Ok(json) => Response::Status { json },
            Err(e) => failed(e),
        },
        Command::Log { n } => match db.log(usize::try_from(*n).unwrap_or(usize::MAX)) {
            Ok(entries) => Response::Lines(
                entries
                    .into_iter()
                    .map(|e| format!("{} {} {} {}", e.id, e.author, e.clock, e.summary))
                    .collect(),
            ),
            Err(e) => failed(e),
        },
        Command::Sync => match db.sync_with_peers() {
            Ok(summary) => Response::Synced { summary },
            Err(e) => failed(e),
        },
    }
}

/// After a successful write of `key`: announces it, then makes it durable.
fn settle(db: &GitDb, key: &str) -> Response {
    // The write succeeded, so the key parses.
    if let Ok(k) = Key::parse(key) {
        db.announce_changed(vec![k.as_str().to_owned()]);
    }
    match db.sync() {
        Ok(()) => Response::Done,
        Err(e) => failed(e),
    }
}

/// A key as messages show it: `/a/b`.
pub fn display_key(key: &str) -> String {
    format!("/{}", key.trim_matches('/'))
}

fn missing(e: impl std::fmt::Display) -> Response {
    Response::error(ErrorKind::Missing, e)
}

fn failed(e: impl std::fmt::Display) -> Response {
    Response::error(ErrorKind::Failed, e)
}
