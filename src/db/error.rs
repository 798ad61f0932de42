//! The errors of the db layer: one enum for every verb, each variant naming the key or path it
//! concerns, and how to reach the I/O error underneath (what the mount turns into an errno).
//! A file of its own because every other file returns it and none of them owns it.

use std::path::{Path, PathBuf};

use crate::db::journal::JournalError;
use crate::db::{ClockError, Key, KeyError, MetaError};
use crate::store::{ObjectId, StoreError};

/// Errors of the db layer. Each names the key (or path) it concerns.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Clock(#[from] ClockError),
    #[error("no such key: {key}")]
    NotFound { key: Key },
    /// A value was expected where a directory is.
    #[error("{key} is a directory")]
    IsDirectory { key: Key },
    /// A directory was expected where a value is.
    #[error("{key} is a value, not a directory")]
    NotADirectory { key: Key },
    /// Setting `key` would need `parent`, which is a value, to be a directory.
    #[error("cannot set {key}: {parent} is a value, not a directory")]
    ParentIsValue { key: Key, parent: Key },
    #[error("{key} is a directory that is not empty")]
    NotEmpty { key: Key },
    #[error("cannot rename {from} to {to}: {reason}")]
    InvalidRename {
        from: Key,
        to: Key,
        reason: &'static str,
    },
    #[error("repository {path} is locked by pid {pid} (another gitdb process writes it)")]
    Locked { path: PathBuf, pid: String },
    #[error("repository {path} was opened read-only")]
    ReadOnly { path: PathBuf },
    #[error("journal {path}: {source}")]
    Journal { path: PathBuf, source: JournalError },
    /// A staged value's blob is not in the repository (something deleted it behind gitdb's
    /// back): committing would write a tree naming a missing object.
    #[error("the value of /{key} is missing: blob {id} is not in the repository")]
    MissingValue { key: String, id: ObjectId },
    #[error("commit on {branch} failed: the branch kept moving under us ({attempts} attempts)")]
    CommitRace { branch: String, attempts: u32 },
    #[error("cannot write out the value in blob {id}: {source}")]
    CopyOut {
        id: ObjectId,
        source: std::io::Error,
    },
    /// The node-local metadata (modes, owners) could not be read or changed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("this node has no peers to sync with (start it with --listen/--peer)")]
    NoReplication,
    #[error("sync failed: {reason}")]
    Replication { reason: String },
    #[error("starting the {name} thread: {source}")]
    Thread {
        name: &'static str,
        source: std::io::Error,
    },
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

impl DbError {
    /// The I/O error underneath, if there is one (a full disk, a quota, a read-only
    /// filesystem), through the layers' chains of sources: what the mount passes on to
    /// applications (see `fuse/errno.rs`).
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            DbError::Journal { source, .. } => source.io(),
            DbError::Store(e) => e.io_error(),
            DbError::Meta(e) => e.io(),
            DbError::CopyOut { source, .. } => Some(source),
            DbError::Thread { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A `DbError::Journal` naming `path`, for a journal error (or a plain I/O error) there: the
/// one `map_err` of every journal call.
pub(super) fn journal_err<E: Into<JournalError>>(path: &Path) -> impl FnOnce(E) -> DbError + '_ {
    move |source| DbError::Journal {
        path: path.to_owned(),
        source: source.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(code: i32) -> std::io::Error {
        std::io::Error::from_raw_os_error(code)
    }

    /// The store's I/O errors reach the mount's errno through this, so a full disk under a
    /// blob write is ENOSPC to the application, not EIO (the mapping itself is
    /// `fuse/errno.rs`'s).
    #[test]
    fn the_io_error_under_a_store_error_is_found_however_deep() {
        #[derive(Debug, thiserror::Error)]
        #[error("wrapped")]
        struct Wrapped(#[source] std::io::Error);
        let code_of = |e: DbError| e.io_error().and_then(std::io::Error::raw_os_error);
        // ENOSPC, EDQUOT and EROFS on Linux (the db passes any code on untouched).
        for code in [28, 122, 30] {
            let plain = DbError::Store(StoreError::Io {
                path: "o".into(),
                source: io(code),
            });
            assert_eq!(code_of(plain), Some(code));
            // Boxed inside a store error, and deeper inside another error's sources.
            let boxed = DbError::Store(StoreError::Write {
                what: "blob",
                source: Box::new(Wrapped(io(code))),
            });
            assert_eq!(code_of(boxed), Some(code));
        }
        // An OS error wrapped with context (as tempfile does for gix's object writes) keeps
        // its kind.
        let wrapped = DbError::Store(StoreError::Write {
            what: "blob",
            source: Box::new(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "at path x",
            )),
        });
        assert_eq!(
            wrapped.io_error().map(std::io::Error::kind),
            Some(std::io::ErrorKind::StorageFull)
        );
        let none = DbError::Store(StoreError::Write {
            what: "blob",
            source: "no io error here".into(),
        });
        assert!(none.io_error().is_none());
    }
}
