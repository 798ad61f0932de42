//! Commit-graph queries and raw object copies, for the merge layer (and tests that simulate peers).
//!
//! Merging needs *all* best common ancestors of two commits (criss-cross histories have several),
//! not just the one `merge_base` picks; and simulating several nodes in one process needs to copy
//! the objects one repository lacks from another, verified by their hash on write.

use std::collections::HashSet;

use super::{ObjectId, Result, Store, StoreError, boxed};

/// The kind of a raw object, as stored.
pub use gix::object::Kind as ObjectKind;

impl Store {
    /// Every best common ancestor of `a` and `b` (git's `merge-base --all`), sorted by id so the
    /// answer does not depend on argument order. Empty for unrelated histories.
    ///
    /// gix 0.90's `merge_bases_many` can return redundant bases (its `remove_redundant` never
    /// follows the second parent of a merge once the first was seen), so a candidate that is an
    /// ancestor of another candidate is dropped here.
    pub fn merge_bases(&self, a: ObjectId, b: ObjectId) -> Result<Vec<ObjectId>> {
        if a == b {
            return Ok(vec![a]);
        }
        let candidates = self.raw_merge_bases(a, b)?;
        let mut bases = Vec::with_capacity(candidates.len());
        for &c in &candidates {
            let mut redundant = false;
            for &d in &candidates {
                if d != c && self.descends_from(d, c)? {
                    redundant = true;
                    break;
                }
            }
            if !redundant {
                bases.push(c);
            }
        }
        bases.sort();
        bases.dedup();
        Ok(bases)
    }

    /// Whether `descendant` has `ancestor` in its history (or is it). Sound even where gix's
    /// `merge_base` picks a redundant base first: an ancestor is always among the candidates.
    pub fn descends_from(&self, descendant: ObjectId, ancestor: ObjectId) -> Result<bool> {
        if descendant == ancestor {
            return Ok(true);
        }
        Ok(self
            .raw_merge_bases(ancestor, descendant)?
            .contains(&ancestor))
    }

    fn raw_merge_bases(&self, a: ObjectId, b: ObjectId) -> Result<Vec<ObjectId>> {
        self.with_repo(|repo| {
            repo.merge_bases_many(a, &[b])
                .map(|ids| ids.into_iter().map(|id| id.detach()).collect())
                .map_err(|e| StoreError::Read {
                    id: a,
                    source: boxed(e),
                })
        })
    }

    /// The kind and bytes of any object.
    pub fn raw_object(&self, id: ObjectId) -> Result<(ObjectKind, Vec<u8>)> {
        self.with_repo(|repo| {
            let object = self.find(repo, id)?;
            Ok((object.kind, object.detach().data))
        })
    }

    /// Writes an object from its kind and bytes; returns its id (computed from the bytes).
    pub fn write_raw(&self, kind: ObjectKind, data: &[u8]) -> Result<ObjectId> {
        use gix::objs::Write;
        self.write_loose("object", |repo| repo.objects.write_buf(kind, data))
    }

    /// Copies every object reachable from `tip` in `from` that this repository lacks, children
    /// before parents, so an object present here always has its whole closure here too (the
    /// walk stops at objects already present). Returns how many objects were written.
    pub fn copy_from(&self, from: &Store, tip: ObjectId) -> Result<usize> {
        let hash = gix::hash::Kind::Sha1;
        let mut written = 0;
        let mut seen = HashSet::new();
        // (id, children already pushed)
        let mut stack = vec![(tip, false)];
        while let Some((id, expanded)) = stack.pop() {
            if expanded {
                let (kind, data) = from.raw_object(id)?;
                let got = self.write_raw(kind, &data)?;
                if got != id {
                    return Err(StoreError::Read {
                        id,
                        source: format!("object hashed to {got}").into(),
                    });
                }
                written += 1;
                continue;
            }
            if !seen.insert(id) || self.has_object(id) {
                continue;
            }
            stack.push((id, true));
            let (kind, data) = from.raw_object(id)?;
            let bad = |source| StoreError::Read { id, source };
            match kind {
                ObjectKind::Commit => {
                    let c =
                        gix::objs::CommitRef::from_bytes(&data, hash).map_err(|e| bad(boxed(e)))?;
                    stack.push((c.tree(), false));
                    stack.extend(c.parents().map(|p| (p, false)));
                }
                ObjectKind::Tree => {
                    let t =
                        gix::objs::TreeRef::from_bytes(&data, hash).map_err(|e| bad(boxed(e)))?;
                    for e in t.entries {
                        if !e.mode.is_commit() {
                            stack.push((e.oid.to_owned(), false));
                        }
                    }
                }
                ObjectKind::Blob | ObjectKind::Tag => {}
            }
        }
        Ok(written)
    }
}
