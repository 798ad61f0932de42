//! [`FsCore`]: the filesystem as methods on one type, apart from fuser's callbacks.
//!
//! Its operations are spread over this folder by concept (`impl FsCore` in `attrs.rs`,
//! `names.rs`, `open.rs`, ...); [`super::adapter`] calls them from `fuser::Filesystem`. It
//! holds nothing but the [`Shared`] state, so a background thread can make one to run an
//! operation (storing open files at shutdown does).

use std::sync::Arc;

use super::shared::Shared;

use crate::db::GitDb;

/// The filesystem without fuser's request and reply types (see the module docs).
pub struct FsCore {
    pub(super) s: Arc<Shared>,
}

pub(super) fn now_ms() -> u64 {
    crate::defaults::now_ms()
}

impl FsCore {
    pub fn new(shared: Arc<Shared>) -> FsCore {
        FsCore { s: shared }
    }

    pub(super) fn db(&self) -> &GitDb {
        &self.s.db
    }
}
