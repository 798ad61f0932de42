//! History verbs for the layers above: what a commit says and what it held, so that the mount
//! (`/.gitdb/history`) and the client (`gitdb show`) ask db rather than reach into the store.
//! All of it is immutable once written, and the store caches it.

use std::io::Read;
use std::sync::Arc;

use crate::db::{GitDb, Key, Result};
use crate::store::{ObjectId, TreeEntry, ValueMode};

pub use crate::store::CommitInfo;

impl GitDb {
    /// What commit `id` says: its tree, parents, author, time and message.
    pub fn commit_info(&self, id: ObjectId) -> Result<Arc<CommitInfo>> {
        Ok(self.store.commit_info(id)?)
    }

    /// The entry at `path` (a key path without the leading `/`; `""` is the root) in the
    /// tree of commit `commit`, or `None` if the commit held nothing there.
    pub fn entry_at_commit(&self, commit: ObjectId, path: &str) -> Result<Option<TreeEntry>> {
        let tree = self.store.commit_info(commit)?.tree;
        Ok(self.store.lookup(tree, path)?)
    }

    /// The size of the value in blob `id`, without reading it where the storage allows.
    pub fn value_size(&self, id: ObjectId) -> Result<u64> {
        Ok(self.store.blob_size(id)?)
    }

    /// Sets `key` to the `size` bytes `reader` yields, hashed and compressed as they are read,
    /// so a value of any size costs a buffer of memory (the mount's large files).
    pub fn set_stream(
        &self,
        key: &str,
        size: u64,
        reader: impl Read,
        mode: ValueMode,
    ) -> Result<ObjectId> {
        Key::parse_value(key)?;
        let id = self.store.write_blob_stream(size, reader)?;
        self.set_blob(key, id, mode)?;
        Ok(id)
    }
}
