//! What can go wrong in the store, and the search for the I/O error under gix's error trees.
//!
//! Kept apart from the operations so that every store file, and db's mapping of store errors,
//! reads one definition; each variant names the object, ref or path concerned.

use std::path::PathBuf;

use super::ObjectId;

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong in the store. Every variant names the object, ref or path concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the repository at {path}: {source}")]
    Open { path: PathBuf, source: BoxError },
    #[error("cannot create a repository at {path}: {source}")]
    Create { path: PathBuf, source: BoxError },
    #[error("object {id} is missing from the repository")]
    Missing { id: ObjectId },
    #[error("cannot read object {id}: {source}")]
    Read { id: ObjectId, source: BoxError },
    /// Writing a blob's contents out (to a plain copy) failed.
    #[error("cannot write out blob {id}: {source}")]
    CopyOut {
        id: ObjectId,
        source: std::io::Error,
    },
    #[error("object {id} is not a {expected}")]
    WrongKind {
        id: ObjectId,
        expected: &'static str,
    },
    #[error("cannot write {what}: {source}")]
    Write {
        what: &'static str,
        source: BoxError,
    },
    #[error("cannot read ref {name}: {source}")]
    Ref { name: String, source: BoxError },
    #[error("ref {name} moved: expected {expected:?}, found {actual:?}")]
    RefMoved {
        name: String,
        expected: Option<ObjectId>,
        actual: Option<ObjectId>,
    },
    #[error("cannot update ref {name}: {source}")]
    RefUpdate { name: String, source: BoxError },
    #[error("unknown revision {spec:?}")]
    UnknownRevision { spec: String },
    /// Objects from another repository that failed a check (see [`super::transfer`]).
    #[error("refused {what}: {reason}")]
    Refused { what: String, reason: String },
    /// Objects from another repository that would leave the filesystem less than its
    /// reserve (see `room.rs`); `source` is ENOSPC, what a full disk says.
    #[error(
        "refused {what}: it needs up to {need} bytes, and the disk has {free} free of which \
         {reserve} stay for this node's own writes: {source}"
    )]
    NoRoom {
        what: String,
        need: u64,
        free: u64,
        reserve: u64,
        source: std::io::Error,
    },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// The I/O error underneath, if there is one (a full disk, a read-only filesystem), found
    /// through the chain of sources, gix's error trees included.
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            StoreError::Io { source, .. }
            | StoreError::CopyOut { source, .. }
            | StoreError::NoRoom { source, .. } => Some(source),
            StoreError::Open { source, .. }
            | StoreError::Create { source, .. }
            | StoreError::Read { source, .. }
            | StoreError::Write { source, .. }
            | StoreError::Ref { source, .. }
            | StoreError::RefUpdate { source, .. } => io_error_in(source.as_ref()),
            StoreError::Missing { .. }
            | StoreError::WrongKind { .. }
            | StoreError::RefMoved { .. }
            | StoreError::UnknownRevision { .. }
            | StoreError::Refused { .. } => None,
        }
    }
}

/// The first [`std::io::Error`] in `error`'s chain of sources. gix errors are trees whose
/// `source()` follows one path; their own search covers every branch.
pub fn io_error_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        if let Some(io) = e
            .downcast_ref::<gix::Error>()
            .and_then(|g| g.downcast_any_ref::<std::io::Error>())
        {
            return Some(io);
        }
        current = e.source();
    }
    None
}

pub(super) fn boxed(e: impl Into<BoxError>) -> BoxError {
    e.into()
}
