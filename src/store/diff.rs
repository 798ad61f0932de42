//! Walking and comparing trees: every value below a tree, and the values that differ between
//! two trees.
//!
//! Apart from plain reads because these follow the size of the change rather than of a
//! lookup: subtrees with the same id are skipped without being read.

use super::{EntryKind, ObjectId, Result, Store, TreeEntry};
use crate::paths::join;

/// One difference between two trees, as a path and the entries on each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeChange {
    pub path: String,
    pub old: Option<(EntryKind, ObjectId)>,
    pub new: Option<(EntryKind, ObjectId)>,
}

impl Store {
    /// Visits every value below the tree `root` (depth first, in name order), with its full
    /// path under `prefix`.
    pub fn walk_values(
        &self,
        root: ObjectId,
        prefix: &str,
        visit: &mut dyn FnMut(&str, &TreeEntry) -> Result<()>,
    ) -> Result<()> {
        let tree = self.tree(root)?;
        for entry in tree.entries() {
            let path = join(prefix, &entry.name);
            match entry.kind {
                EntryKind::Dir => self.walk_values(entry.id, &path, visit)?,
                EntryKind::Value(_) => visit(&path, entry)?,
                EntryKind::Submodule => {}
            }
        }
        Ok(())
    }

    /// The values that differ between two trees. Subtrees with the same id are skipped without
    /// being read, so the cost follows the size of the change, not of the trees.
    pub fn diff_trees(&self, old: ObjectId, new: ObjectId) -> Result<Vec<TreeChange>> {
        let mut out = Vec::new();
        self.diff_into(Some(old), Some(new), "", &mut out)?;
        Ok(out)
    }

    fn diff_into(
        &self,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
        prefix: &str,
        out: &mut Vec<TreeChange>,
    ) -> Result<()> {
        if old == new {
            return Ok(());
        }
        let old_tree = old.map(|id| self.tree(id)).transpose()?;
        let new_tree = new.map(|id| self.tree(id)).transpose()?;
        let empty: &[TreeEntry] = &[];
        let a = old_tree.as_deref().map_or(empty, |t| t.entries());
        let b = new_tree.as_deref().map_or(empty, |t| t.entries());
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let ord = match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) => x.name.as_bytes().cmp(y.name.as_bytes()),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            let (x, y) = match ord {
                std::cmp::Ordering::Less => {
                    i += 1;
                    (a.get(i - 1), None)
                }
                std::cmp::Ordering::Greater => {
                    j += 1;
                    (None, b.get(j - 1))
                }
                std::cmp::Ordering::Equal => {
                    i += 1;
                    j += 1;
                    (a.get(i - 1), b.get(j - 1))
                }
            };
            let name = x.or(y).map(|e| &*e.name).unwrap_or("");
            let path = join(prefix, name);
            let dir = |e: Option<&TreeEntry>| e.filter(|e| e.kind == EntryKind::Dir).map(|e| e.id);
            let val = |e: Option<&TreeEntry>| {
                e.filter(|e| matches!(e.kind, EntryKind::Value(_)))
                    .map(|e| (e.kind, e.id))
            };
            // A name that is a directory on either side is compared below; a value that is
            // replaced by a directory (or the reverse) shows up as a value change plus the
            // directory's contents.
            if dir(x).is_some() || dir(y).is_some() {
                self.diff_into(dir(x), dir(y), &path, out)?;
            }
            let (vx, vy) = (val(x), val(y));
            if vx != vy {
                out.push(TreeChange {
                    path,
                    old: vx,
                    new: vy,
                });
            }
        }
        Ok(())
    }
}
