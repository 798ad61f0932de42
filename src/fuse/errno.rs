//! Errno at the edge: the one place where the errors of the layers below become the numbers
//! the kernel hands to applications.
//!
//! db and store report what went wrong in their own terms (a key that is a directory, a
//! journal append that hit a full disk) and know nothing of a kernel; the mount decides what
//! an application sees. The rule for I/O underneath: what the caller can act on (free space,
//! a quota, a read-only filesystem) passes through as itself, anything else is EIO, because
//! an application told EACCES or ENOENT about gitdb's own files would look for the fault in
//! its own.

use fuser::Errno;

use crate::db::{DbError, KeyError, MetaError};

/// The errno a filesystem answers with for an error.
pub trait ToErrno {
    fn errno(&self) -> i32;
}

impl ToErrno for DbError {
    fn errno(&self) -> i32 {
        match self {
            DbError::NotFound { .. } => libc::ENOENT,
            DbError::IsDirectory { .. } => libc::EISDIR,
            DbError::NotADirectory { .. } | DbError::ParentIsValue { .. } => libc::ENOTDIR,
            DbError::Key(KeyError::TooLong { .. }) => libc::ENAMETOOLONG,
            DbError::Key(KeyError::Reserved { .. }) => libc::EPERM,
            DbError::NotEmpty { .. } => libc::ENOTEMPTY,
            DbError::Key(_) | DbError::Clock(_) | DbError::InvalidRename { .. } => libc::EINVAL,
            DbError::Locked { .. } => libc::EBUSY,
            // `sync` on a node without peers, and a sync round that reached none.
            DbError::NoReplication => libc::ENOTCONN,
            DbError::Replication { .. } => libc::EHOSTUNREACH,
            DbError::ReadOnly { .. } | DbError::Meta(MetaError::ReadOnly { .. }) => libc::EROFS,
            DbError::Journal { .. }
            | DbError::Store(_)
            | DbError::MissingValue { .. }
            | DbError::CommitRace { .. }
            | DbError::CopyOut { .. }
            | DbError::Thread { .. }
            | DbError::Meta(_) => self.io_error().map_or(libc::EIO, io_errno),
        }
    }
}

impl ToErrno for std::io::Error {
    fn errno(&self) -> i32 {
        io_errno(self)
    }
}

/// The errno for an I/O error underneath: ENOSPC, EDQUOT and EROFS pass through, anything
/// else is EIO.
pub fn io_errno(e: &std::io::Error) -> i32 {
    use std::io::ErrorKind;
    match e.raw_os_error() {
        Some(code @ (libc::ENOSPC | libc::EDQUOT | libc::EROFS)) => code,
        Some(_) => libc::EIO,
        // An error that wraps the OS error with context (tempfile names the path, as in gix's
        // object writes) keeps only its kind.
        None => match e.kind() {
            ErrorKind::StorageFull => libc::ENOSPC,
            ErrorKind::QuotaExceeded => libc::EDQUOT,
            ErrorKind::ReadOnlyFilesystem => libc::EROFS,
            _ => libc::EIO,
        },
    }
}

pub(super) fn errno(e: i32) -> Errno {
    Errno::from_i32(e)
}

pub(super) fn db_err(e: &DbError) -> Errno {
    errno(e.errno())
}

/// A lookup of a name that cannot be a key finds nothing (except a name that is too long).
pub(super) fn lookup_err(e: &DbError) -> Errno {
    match e {
        DbError::Key(KeyError::TooLong { .. }) => Errno::ENAMETOOLONG,
        DbError::Key(_) => Errno::ENOENT,
        other => db_err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::ObjectId;
    use crate::db::journal::JournalError;

    fn io(code: i32) -> std::io::Error {
        std::io::Error::from_raw_os_error(code)
    }

    #[test]
    fn a_full_disk_a_quota_and_a_read_only_filesystem_pass_through() {
        let journal = |code| DbError::Journal {
            path: "j".into(),
            source: JournalError::Io(io(code)),
        };
        for code in [libc::ENOSPC, libc::EDQUOT, libc::EROFS] {
            assert_eq!(journal(code).errno(), code);
            let copy = DbError::CopyOut {
                id: ObjectId::null(gix::hash::Kind::Sha1),
                source: io(code),
            };
            assert_eq!(copy.errno(), code);
        }
        assert_eq!(journal(libc::EACCES).errno(), libc::EIO);
        // An OS error wrapped with context (as tempfile does for gix's object writes) keeps
        // only its kind. (That the db finds the I/O error under its store's errors, however
        // deep, is `DbError::io_error`'s test in db/error.rs.)
        for (kind, code) in [
            (std::io::ErrorKind::StorageFull, libc::ENOSPC),
            (std::io::ErrorKind::QuotaExceeded, libc::EDQUOT),
            (std::io::ErrorKind::ReadOnlyFilesystem, libc::EROFS),
            (std::io::ErrorKind::NotFound, libc::EIO),
        ] {
            let wrapped = std::io::Error::new(kind, "at path x");
            let copy = DbError::CopyOut {
                id: ObjectId::null(gix::hash::Kind::Sha1),
                source: wrapped,
            };
            assert_eq!(copy.errno(), code);
        }
        assert_eq!(
            DbError::Journal {
                path: "j".into(),
                source: JournalError::Poisoned { cause: "x".into() },
            }
            .errno(),
            libc::EIO
        );
        assert_eq!(
            DbError::MissingValue {
                key: "k".into(),
                id: ObjectId::null(gix::hash::Kind::Sha1),
            }
            .errno(),
            libc::EIO
        );
    }

    #[test]
    fn names_and_kinds_get_their_own_errno() {
        let long = crate::db::Key::parse(&"n".repeat(300)).expect_err("too long");
        assert_eq!(DbError::Key(long).errno(), libc::ENAMETOOLONG);
        assert_eq!(
            DbError::IsDirectory {
                key: crate::db::Key::parse("/d").expect("key")
            }
            .errno(),
            libc::EISDIR
        );
    }
}
