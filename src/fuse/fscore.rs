//! [`FsCore`]: the filesystem as methods on one type, apart from fuser's callbacks — the
//! pattern of mountpoint-s3, whose `fuse.rs` only turns fuser calls into calls on a filesystem
//! that knows nothing of fuser.
//!
//! Its operations are spread over this folder by concept (`impl FsCore` in `attrs.rs`,
//! `names.rs`, `entries.rs`, `open.rs`, `io.rs`, `setattr.rs`, `rename.rs`, `listing.rs`,
//! `controlfs.rs`); [`super::adapter`] calls them from `fuser::Filesystem` and replies. They
//! take plain arguments (a [`Caller`] instead of fuser's `Request`) and return
//! `Result<T, Errno>`, so they run without `/dev/fuse`: the tests in `tests.rs` drive them over
//! a temp repository. Where a reply lends bytes (READ) or fills a buffer until it is full
//! (READDIR), the operation takes a closure instead of returning a copy.
//!
//! Errors are fuser's `Errno`: it is a plain number with the names the kernel uses, which the
//! core answers with directly (ESTALE, EROFS, ...), and a type of our own would only be
//! converted back to it at every reply. The mapping of the lower layers' errors to it is in
//! [`super::errno`].
//!
//! `FsCore` holds nothing but the [`Shared`] state, so a background thread can make one to run
//! an operation (storing open files at shutdown does).

use std::sync::Arc;

use super::shared::Shared;

use crate::db::GitDb;

/// The filesystem without fuser's request and reply types (see the module docs).
pub(crate) struct FsCore {
    pub(super) s: Arc<Shared>,
}

/// Who asks: the ids a request carries (for the owner of what it makes, and for chmod and
/// chown checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// The process behind the request (its supplementary groups are read from `/proc`).
    pub pid: u32,
}

impl Caller {
    /// This process as the caller: what the unit tests and the callbacks bench drive the core
    /// as, with no kernel request to take it from.
    pub(super) fn this_process() -> Caller {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Caller {
            uid,
            gid,
            pid: std::process::id(),
        }
    }
}

impl From<&fuser::Request> for Caller {
    fn from(req: &fuser::Request) -> Caller {
        Caller {
            uid: req.uid(),
            gid: req.gid(),
            pid: req.pid(),
        }
    }
}

pub(super) fn now_ms() -> u64 {
    crate::defaults::now_ms()
}

impl FsCore {
    pub(crate) fn new(shared: Arc<Shared>) -> FsCore {
        FsCore { s: shared }
    }

    pub(super) fn db(&self) -> &GitDb {
        &self.s.db
    }
}
