//! Transfer verbs: what gossip moves between nodes, offered by the db so that gossip never names
//! the store (see docs/design.md: db is the only door).
//!
//! A pull is: the puller names the commits it has ([`GitDb::haves`]), the other side sends
//! every commit it has and they lack as a stream of checked items ([`GitDb::export`], format in
//! [`crate::store::Item`]), and the puller receives them ([`GitDb::receiver`]). Nothing here
//! moves a ref: the merge layer does that afterwards, by compare-and-swap, and only once
//! [`Receiver::finish`] found the wanted commit, so a cut transfer is never named by a ref.

use super::{GitDb, Result};
use crate::store::{Importer, Item, ObjectId, Sent};

/// How many first-parent ancestors of the head are offered one by one before the spacing
/// doubles; and the deepest one looked at. Together about 20 ids (400 bytes): a puller that
/// diverged from its peer `d` commits ago is sent at most about `2d` commits.
const HAVES_DENSE: usize = 8;
const HAVES_DEEPEST: usize = 1 << 12;

/// What one export sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    pub commits: usize,
    /// Commits sent as edits of their first parent / with whole trees.
    pub compact: usize,
    pub whole: usize,
}

impl GitDb {
    /// Whether the object `id` is in the repository.
    pub fn has_object(&self, id: ObjectId) -> bool {
        self.store.has_object(id)
    }

    /// Whether the commit `ancestor` is `descendant` or in its history (both present).
    pub fn descends_from(&self, descendant: ObjectId, ancestor: ObjectId) -> Result<bool> {
        Ok(self.store.descends_from(descendant, ancestor)?)
    }

    /// The commits to name as haves in a pull: the head and its first-parent ancestors, densely
    /// near the head and then at doubling distances, plus those of `known` (say the heads peers
    /// announced before) that are here.
    pub fn haves(&self, known: &[ObjectId]) -> Result<Vec<ObjectId>> {
        let mut out = Vec::new();
        let mut next = 0usize;
        let mut step = 1usize;
        let mut at = self.head();
        let mut depth = 0usize;
        while let Some(id) = at {
            if depth == next {
                out.push(id);
                if depth >= HAVES_DENSE {
                    step *= 2;
                }
                next += step;
            }
            if depth >= HAVES_DEEPEST {
                break;
            }
            at = self.store.commit_info(id)?.parents.first().copied();
            depth += 1;
        }
        for &k in known {
            if !out.contains(&k) && self.store.has_object(k) {
                out.push(k);
            }
        }
        Ok(out)
    }

    /// Sends to `out` every commit reachable from `want` and from none of `haves` (those that
    /// are here), parents first, each with the blobs and trees the receiver lacks.
    pub fn export(
        &self,
        want: ObjectId,
        haves: &[ObjectId],
        out: &mut dyn FnMut(Item) -> Result<()>,
    ) -> Result<ExportStats> {
        let commits = self.store.commits_missing(want, haves)?;
        let mut sent = Sent::default();
        let mut failed = None;
        for &c in &commits {
            let r = self.store.export_commit(c, &mut sent, &mut |item| {
                out(item).map_err(|e| {
                    failed = Some(e);
                    crate::store::StoreError::Refused {
                        what: "the export".into(),
                        reason: "the receiver went away".into(),
                    }
                })
            });
            if let Some(e) = failed.take() {
                return Err(e);
            }
            r?;
        }
        Ok(ExportStats {
            commits: commits.len(),
            compact: sent.compact,
            whole: sent.whole,
        })
    }

    /// Starts receiving a transfer (see [`Receiver`]).
    pub fn receiver(&self) -> Result<Receiver<'_>> {
        self.check_writable()?;
        Ok(Receiver {
            importer: Importer::new(&self.store),
        })
    }
}

/// Receives the items of one transfer, checking each as it arrives.
pub struct Receiver<'a> {
    importer: Importer<'a>,
}

impl Receiver<'_> {
    pub fn add(&mut self, item: Item) -> Result<()> {
        Ok(self.importer.add(item)?)
    }

    /// Starts a blob of `size` bytes that comes in parts ([`Receiver::blob_part`]): written to
    /// disk as the parts arrive, so its memory is one part's, whatever the size; refused with
    /// ENOSPC at once if the disk has no room for it besides its reserve.
    pub fn begin_blob(&mut self, size: u64) -> Result<()> {
        Ok(self.importer.begin_blob(size)?)
    }

    /// The next part of the blob under way; a part that fails drops what the blob wrote.
    pub fn blob_part(&mut self, data: &[u8]) -> Result<()> {
        Ok(self.importer.blob_part(data)?)
    }

    /// Ends the blob under way, which must have come whole: only then is it an object.
    pub fn end_blob(&mut self) -> Result<ObjectId> {
        Ok(self.importer.end_blob()?)
    }

    /// Commits and objects written so far.
    pub fn counts(&self) -> (usize, usize) {
        (self.importer.commits, self.importer.objects)
    }

    /// Ends the transfer; fails unless `want` is now in the repository.
    pub fn finish(self, want: ObjectId) -> Result<()> {
        Ok(self.importer.finish(want)?)
    }
}
