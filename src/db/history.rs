//! History verbs for the layers above: what a commit says and what it held (its log, a diff,
//! reads at a revision), so that the mount (`/.gitdb/history`) and the client (`gitdb show`)
//! ask db rather than reach into the store. All of it is immutable once written, and the store
//! caches it.

use std::io::Read;
use std::sync::Arc;

use crate::db::{CommitStamp, DbError, GitDb, Key, ListEntry, NodeKind, Result};
use crate::store::{Bytes, EntryKind, ObjectId, TreeEntry, ValueMode};

pub use crate::store::CommitInfo;

/// One key that differs between two commits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiffEntry {
    pub key: String,
    pub change: DiffKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum DiffKind {
    Added,
    Modified,
    Deleted,
}

/// One commit as `log` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogEntry {
    pub id: String,
    pub parents: Vec<String>,
    pub author: String,
    pub seconds: i64,
    pub summary: String,
    pub clock: String,
    pub hlc: Option<String>,
}

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
    /// A small value waiting for its commit is answered from memory: asked of the object
    /// database, its miss made gix list the pack directory again, on every open of a file
    /// written since the last commit (a tenth of the daemon's CPU in fsbench, perf).
    pub fn value_size(&self, id: ObjectId) -> Result<u64> {
        if let Some(data) = self.read_state().pending.blobs.get(&id) {
            return Ok(data.len() as u64);
        }
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

    /// Up to `n` commits from the head, newest first.
    pub fn log(&self, n: usize) -> Result<Vec<LogEntry>> {
        let Some(head) = self.head() else {
            return Ok(Vec::new());
        };
        self.log_from(head, n)
    }

    /// Up to `n` commits from `tip`, newest first.
    pub fn log_from(&self, tip: ObjectId, n: usize) -> Result<Vec<LogEntry>> {
        Ok(self
            .store
            .log(tip, n)?
            .into_iter()
            .map(|c| {
                let stamp = CommitStamp::from_message(&c.message);
                LogEntry {
                    id: c.id.to_string(),
                    parents: c.parents.iter().map(|p| p.to_string()).collect(),
                    author: c.author.clone(),
                    seconds: c.seconds,
                    summary: c.summary().to_owned(),
                    clock: stamp.clock.to_string(),
                    hlc: stamp.hlc.map(|h| h.to_string()),
                }
            })
            .collect())
    }

    /// Resolves a revision (`main~1`, an id or prefix, any ref) to a commit id.
    pub fn resolve_rev(&self, rev: &str) -> Result<ObjectId> {
        Ok(self.store.resolve_commit(rev)?)
    }

    /// The committed value of `key` at commit `rev`.
    pub fn get_at(&self, rev: &str, key: &str) -> Result<Option<Bytes>> {
        let key = Key::parse_value(key)?;
        let tree = self.store.commit_info(self.resolve_rev(rev)?)?.tree;
        match self.store.lookup(tree, key.as_str())? {
            None => Ok(None),
            Some(e) => match e.kind {
                EntryKind::Value(_) => Ok(Some(self.store.blob(e.id)?)),
                EntryKind::Dir => Err(DbError::IsDirectory { key }),
                EntryKind::Submodule => Ok(None),
            },
        }
    }

    /// The children of `prefix` at commit `rev`.
    pub fn list_at(&self, rev: &str, prefix: &str) -> Result<Vec<ListEntry>> {
        let key = Key::parse(prefix)?;
        let tree = self.store.commit_info(self.resolve_rev(rev)?)?.tree;
        let dir = match self.store.lookup(tree, key.as_str())? {
            None => return Err(DbError::NotFound { key }),
            Some(e) if e.kind != EntryKind::Dir => return Err(DbError::NotADirectory { key }),
            Some(e) => e,
        };
        Ok(self
            .store
            .tree(dir.id)?
            .entries()
            .iter()
            .filter_map(|e| {
                let kind = match e.kind {
                    EntryKind::Value(m) => NodeKind::Value(m),
                    EntryKind::Dir => NodeKind::Dir,
                    EntryKind::Submodule => return None,
                };
                Some(ListEntry {
                    name: e.name.to_string(),
                    kind,
                })
            })
            .collect())
    }

    /// Every key committed at `rev`, sorted.
    pub fn list_recursive_at(&self, rev: &str) -> Result<Vec<String>> {
        let tree = self.store.commit_info(self.resolve_rev(rev)?)?.tree;
        let mut out = Vec::new();
        self.store.walk_values(tree, "", &mut |path, _| {
            out.push(path.to_owned());
            Ok(())
        })?;
        Ok(out)
    }

    /// The keys that differ between commits `a` and `b` (as seen going from `a` to `b`).
    pub fn diff(&self, a: &str, b: &str) -> Result<Vec<DiffEntry>> {
        self.diff_heads(Some(self.resolve_rev(a)?), Some(self.resolve_rev(b)?))
    }

    /// The keys that differ between two commits (`None`: no commit, no keys), as
    /// [`GitDb::diff`] and the follower of [`super::follow`] see them.
    pub fn diff_heads(&self, a: Option<ObjectId>, b: Option<ObjectId>) -> Result<Vec<DiffEntry>> {
        let tree = |c: Option<ObjectId>| -> Result<ObjectId> {
            Ok(match c {
                Some(id) => self.store.commit_info(id)?.tree,
                None => self.store.empty_tree(),
            })
        };
        Ok(self
            .store
            .diff_trees(tree(a)?, tree(b)?)?
            .into_iter()
            .map(|c| DiffEntry {
                key: c.path,
                change: match (c.old, c.new) {
                    (None, _) => DiffKind::Added,
                    (_, None) => DiffKind::Deleted,
                    _ => DiffKind::Modified,
                },
            })
            .collect())
    }
}
