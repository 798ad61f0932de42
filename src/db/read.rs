//! Reading the visible state, the overlay over the head: `get`, `stat` and the listings, and
//! the rules by which the overlay's tombstones hide committed values and directories (see the
//! working-layer model in the module docs). Readers take `state` shared, never the journal.

use std::collections::BTreeMap;

use crate::db::witness::Witness;
use crate::db::working::Working;
use crate::db::{
    Change, DbError, GitDb, Key, ListEntry, NodeKind, Result, StagedValue, Stat, State, Visible,
};
use crate::store::{Bytes, EntryKind, ObjectId, ValueMode};

impl GitDb {
    /// The value of `key`, or `None` if there is none (a directory is an error).
    pub fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let key = Key::parse_value(key)?;
        match self.resolve(&key)? {
            Visible::Value(v, committed) => Ok(Some(self.read_value(v.id, committed)?)),
            Visible::Dir => Err(DbError::IsDirectory { key }),
            Visible::Absent => Ok(None),
        }
    }

    /// The contents of a visible value: a pending small value from memory, else the blob.
    fn read_value(&self, id: ObjectId, committed: bool) -> Result<Bytes> {
        if !committed && let Some(data) = self.read_state().pending.blobs.get(&id) {
            return Ok(data.clone());
        }
        Ok(self.store.blob(id)?)
    }

    /// The contents of the blob `id` named by a [`Stat`]: from memory while it is a small value
    /// waiting for its commit, else from the object database.
    pub fn value(&self, id: ObjectId) -> Result<Bytes> {
        self.read_value(id, false)
    }

    /// Writes the contents of the blob `id` named by a [`Stat`] to `out`, returning its size:
    /// for a value too large to hold, as the mount's plain copies are (a loose blob is
    /// inflated piece by piece, see `store/copy_out.rs`).
    pub fn copy_value(&self, id: ObjectId, out: &mut impl std::io::Write) -> Result<u64> {
        let pending = self.read_state().pending.blobs.get(&id).cloned();
        if let Some(data) = pending {
            out.write_all(&data)
                .map_err(|source| DbError::CopyOut { id, source })?;
            return Ok(data.len() as u64);
        }
        Ok(self.store.copy_blob(id, out)?)
    }

    /// Size, mode and id of a value, or that `key` is a directory; `None` if nothing is there.
    pub fn stat(&self, key: &str) -> Result<Option<Stat>> {
        let key = Key::parse(key)?;
        if key.is_root() {
            return Ok(Some(Stat::Dir));
        }
        Ok(match self.resolve(&key)? {
            Visible::Value(v, committed) => Some(Stat::Value {
                mode: v.mode,
                size: v.size,
                id: v.id,
                committed,
            }),
            Visible::Dir => Some(Stat::Dir),
            Visible::Absent => None,
        })
    }

    /// Where `key` stands in the visible state (overlay over head).
    pub(super) fn resolve(&self, key: &Key) -> Result<Visible> {
        let path = key.as_str();
        let (head_tree, deletes_below) = {
            let st = self.read_state();
            if st.working.is_empty() {
                (st.head_tree, false)
            } else {
                match st.working.get(path) {
                    Some(Change::Set(v)) => return Ok(Visible::Value(*v, false)),
                    Some(Change::Delete) => {
                        return Ok(if has_set_under(&st.working, path) {
                            Visible::Dir
                        } else {
                            Visible::Absent
                        });
                    }
                    None => {}
                }
                // One search below `path` gives the usual answers: nothing there (a file) or
                // a set (a directory the overlay keeps); only a tombstone found first needs
                // the index of sets.
                let deletes_below = match st.working.first_under(path) {
                    None => false,
                    Some(Change::Set(_)) => return Ok(Visible::Dir),
                    Some(Change::Delete) => {
                        if has_set_under(&st.working, path) {
                            return Ok(Visible::Dir);
                        }
                        true
                    }
                };
                if hidden_by_ancestor(&st.working, key) {
                    return Ok(Visible::Absent);
                }
                (st.head_tree, deletes_below)
            }
        };
        // The committed side is read without holding the state lock.
        let Some(entry) = self.store.lookup(head_tree, path)? else {
            return Ok(Visible::Absent);
        };
        Ok(match entry.kind {
            EntryKind::Value(mode) => {
                let size = self.store.blob_size(entry.id)?;
                Visible::Value(
                    StagedValue {
                        id: entry.id,
                        mode,
                        size,
                    },
                    true,
                )
            }
            EntryKind::Dir if deletes_below => {
                let st = self.read_state();
                if self.any_visible_value(&st.working, entry.id, path)? {
                    Visible::Dir
                } else {
                    Visible::Absent
                }
            }
            EntryKind::Dir => Visible::Dir,
            EntryKind::Submodule => Visible::Absent,
        })
    }

    /// Whether the committed directory `tree` at `prefix` still has a value the overlay does
    /// not delete. Only asked when the overlay has deletes (and no sets) below `prefix`.
    fn any_visible_value(&self, working: &Working, tree: ObjectId, prefix: &str) -> Result<bool> {
        Ok(self.visible_witness(working, tree, prefix)?.is_some())
    }

    /// The path of a committed value below `prefix` (the directory `tree`) that the overlay
    /// does not delete, if there is one. Starts from the witness found last time (see
    /// [`witness`](super::witness)), so the tombstones of a growing `rm -rf` are not walked
    /// again at every unlink.
    fn visible_witness(
        &self,
        working: &Working,
        tree: ObjectId,
        prefix: &str,
    ) -> Result<Option<String>> {
        let start = match self.witnesses.get(prefix, tree) {
            Some(w) if !deleted_below(working, prefix, &w.path) => return Ok(Some(w.path)),
            Some(w) => w.index,
            None => 0,
        };
        let tree_obj = self.store.tree(tree)?;
        let entries = tree_obj.entries();
        let start = start.min(entries.len());
        for index in (start..entries.len()).chain(0..start) {
            let entry = &entries[index];
            self.witnesses.count_scanned();
            let path = crate::paths::join(prefix, &entry.name);
            if working.get(&path) == Some(&Change::Delete) {
                continue;
            }
            let found = match entry.kind {
                EntryKind::Value(_) => Some(path),
                EntryKind::Dir => self.visible_witness(working, entry.id, &path)?,
                EntryKind::Submodule => None,
            };
            if let Some(found) = found {
                let witness = Witness {
                    tree,
                    index,
                    path: found.clone(),
                };
                self.witnesses.remember(prefix, witness);
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Tree entries scanned so far to decide whether directories with tombstones below them
    /// are still visible. A diagnostic counter: it grows about once per delete, not with the
    /// square of the deletes in one directory.
    pub fn visibility_scans(&self) -> u64 {
        self.witnesses.scanned()
    }

    /// `prefix` parsed, if it is a visible directory (the root always is).
    fn visible_dir(&self, prefix: &str) -> Result<Key> {
        let key = Key::parse(prefix)?;
        if !key.is_root() {
            match self.resolve(&key)? {
                Visible::Dir => {}
                Visible::Value(..) => return Err(DbError::NotADirectory { key }),
                Visible::Absent => return Err(DbError::NotFound { key }),
            }
        }
        Ok(key)
    }

    /// The committed tree at `key`, unless the working layer hides it (a change at `key` or
    /// at one of its ancestors) or there is none.
    fn committed_dir(&self, st: &State, key: &Key) -> Result<Option<ObjectId>> {
        if st.working.contains_key(key.as_str()) || hidden_by_ancestor(&st.working, key) {
            return Ok(None);
        }
        Ok(self
            .store
            .lookup(st.head_tree, key.as_str())?
            .filter(|e| e.kind == EntryKind::Dir)
            .map(|e| e.id))
    }

    /// The immediate children of `prefix`, sorted by name, each a value or a directory.
    pub fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        Ok(self
            .children(prefix, false)?
            .into_iter()
            .map(|(name, kind)| ListEntry { name, kind })
            .collect())
    }

    /// The names of the directories directly below `prefix`, sorted (a directory's link
    /// count at the mount). Values are skipped without being copied, so a directory of many
    /// values costs a scan, not a listing.
    pub fn subdirs(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self.children(prefix, true)?.into_keys().collect())
    }

    /// The visible children of `prefix` (only the directories if `dirs_only`).
    fn children(&self, prefix: &str, dirs_only: bool) -> Result<BTreeMap<String, NodeKind>> {
        let key = self.visible_dir(prefix)?;
        let path = key.as_str();
        // The committed directory is read before the state lock is taken, so a listing that
        // misses the tree cache never holds up writers (nor, behind them, other readers).
        let (st, committed) = loop {
            let head_tree = self.read_state().head_tree;
            let committed = match self.store.lookup(head_tree, path)? {
                Some(e) if e.kind == EntryKind::Dir => Some(self.store.tree(e.id)?),
                _ => None,
            };
            let st = self.read_state();
            if st.head_tree == head_tree {
                break (st, committed);
            }
        };
        let mut children: BTreeMap<String, NodeKind> = BTreeMap::new();
        let hidden = st.working.contains_key(path) || hidden_by_ancestor(&st.working, &key);
        let start = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        // Nothing staged below: the committed entries are the listing as they are.
        let staged_below = st.working.first_under(path).is_some();
        if let Some(tree) = committed.filter(|_| !hidden) {
            for entry in tree.entries() {
                if dirs_only && entry.kind != EntryKind::Dir {
                    continue;
                }
                if !staged_below {
                    match entry.kind {
                        EntryKind::Value(mode) => {
                            children.insert(entry.name.to_string(), NodeKind::Value(mode))
                        }
                        EntryKind::Dir => children.insert(entry.name.to_string(), NodeKind::Dir),
                        EntryKind::Submodule => None,
                    };
                    continue;
                }
                let child = crate::paths::join(path, &entry.name);
                let kind = match (st.working.get(&child), entry.kind) {
                    (Some(_), _) | (None, EntryKind::Submodule) => continue,
                    (None, EntryKind::Value(mode)) => NodeKind::Value(mode),
                    (None, EntryKind::Dir) => {
                        if has_delete_under(&st.working, &child)
                            && !has_set_under(&st.working, &child)
                            && !self.any_visible_value(&st.working, entry.id, &child)?
                        {
                            continue;
                        }
                        NodeKind::Dir
                    }
                };
                children.insert(entry.name.to_string(), kind);
            }
        }
        // Overlay children: a Set at `path/name` is a value, a Set deeper is a directory. One
        // pass over the staged entries below `path`; a child's subtree is stepped over entry
        // by entry while it is small, and jumped over by a new search once it is not.
        const STEPS_BEFORE_SEEK: usize = 16;
        if !staged_below {
            return Ok(children);
        }
        let mut iter = st.working.range::<String, _>(start.clone()..).peekable();
        while let Some((child_path, change)) = iter.next() {
            let Some(rest) = child_path.strip_prefix(start.as_str()) else {
                break;
            };
            if rest.is_empty() {
                continue;
            }
            let Some((name, _)) = rest.split_once('/') else {
                if let Change::Set(v) = change
                    && !dirs_only
                {
                    children.insert(rest.to_owned(), NodeKind::Value(v.mode));
                }
                continue;
            };
            // A directory if anything below it is set.
            let sub = &child_path[..start.len() + name.len() + 1];
            let mut is_dir = matches!(change, Change::Set(_));
            let mut steps = 0;
            while let Some((next, next_change)) = iter.peek() {
                if !next.starts_with(sub) {
                    break;
                }
                if steps == STEPS_BEFORE_SEEK {
                    let dir_path = &sub[..sub.len() - 1];
                    is_dir = is_dir || has_set_under(&st.working, dir_path);
                    // '0' sorts right after '/'.
                    let past = format!("{dir_path}0");
                    iter = st.working.range::<String, _>(past..).peekable();
                    break;
                }
                is_dir = is_dir || matches!(next_change, Change::Set(_));
                iter.next();
                steps += 1;
            }
            if is_dir {
                children.insert(name.to_owned(), NodeKind::Dir);
            }
        }
        Ok(children)
    }

    /// Every value below `prefix` (all depths), as full keys without the leading `/`, sorted.
    pub fn list_recursive(&self, prefix: &str) -> Result<Vec<(String, ValueMode)>> {
        let key = self.visible_dir(prefix)?;
        let st = self.read_state();
        let path = key.as_str();
        let mut out: BTreeMap<String, ValueMode> = BTreeMap::new();
        if let Some(dir) = self.committed_dir(&st, &key)? {
            self.store.walk_values(dir, path, &mut |p, entry| {
                if let EntryKind::Value(mode) = entry.kind
                    && !hidden_below(&st.working, path, p)
                {
                    out.insert(p.to_owned(), mode);
                }
                Ok(())
            })?;
        }
        for (p, change) in st.working.under(path) {
            if let Change::Set(v) = change {
                out.insert(p.clone(), v.mode);
            }
        }
        Ok(out.into_iter().collect())
    }
}

fn has_set_under(working: &Working, path: &str) -> bool {
    working.has_set_under(path)
}

fn has_delete_under(working: &Working, path: &str) -> bool {
    working
        .under(path)
        .any(|(_, c)| matches!(c, Change::Delete))
}

/// Whether a change staged at a proper ancestor of `key` hides the committed entry at `key`
/// (a delete of the ancestor, or a value set where a directory was).
fn hidden_by_ancestor(working: &Working, key: &Key) -> bool {
    key.ancestors().any(|a| working.contains_key(a))
}

/// Whether a tombstone lies at `path` or at a directory between `prefix` and it: what the
/// search for a visible value below `prefix` skips on its way to `path`.
fn deleted_below(working: &Working, prefix: &str, path: &str) -> bool {
    let deleted = |p: &str| working.get(p) == Some(&Change::Delete);
    let rest_start = if prefix.is_empty() {
        0
    } else {
        prefix.len() + 1
    };
    deleted(path)
        || path[rest_start..]
            .match_indices('/')
            .any(|(i, _)| deleted(&path[..rest_start + i]))
}

/// Whether the committed value at `path` (below the visible directory `prefix`) is hidden by a
/// change at it or at a directory between `prefix` and it.
fn hidden_below(working: &Working, prefix: &str, path: &str) -> bool {
    if working.is_empty() {
        return false;
    }
    if working.contains_key(path) {
        return true;
    }
    let rest_start = if prefix.is_empty() {
        0
    } else {
        prefix.len() + 1
    };
    path[rest_start..]
        .match_indices('/')
        .any(|(i, _)| working.contains_key(&path[..rest_start + i]))
}
