//! Commits: their decoded metadata (cached), history walks, ancestry, and writing commit
//! objects (with the empty tree git's fsck wants stored).
//!
//! Apart from trees and blobs because a commit is the unit of history the db layer reasons
//! about (stamps, logs, fast-forwards), and its identity and time are part of what it writes.

use std::sync::Arc;

use super::{BoxError, ObjectId, Result, Store, StoreError, boxed};

/// The identity and time written into a commit.
#[derive(Debug, Clone)]
pub struct Signature {
    pub name: String,
    pub email: String,
    /// Seconds since the Unix epoch, UTC.
    pub seconds: i64,
}

/// What a commit says, decoded once and cached.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    pub id: ObjectId,
    pub tree: ObjectId,
    pub parents: Vec<ObjectId>,
    pub author: String,
    pub seconds: i64,
    pub message: String,
}

impl CommitInfo {
    /// The first line of the message.
    pub fn summary(&self) -> &str {
        self.message.lines().next().unwrap_or("")
    }
}

impl Store {
    /// A commit's metadata, cached.
    pub fn commit_info(&self, id: ObjectId) -> Result<Arc<CommitInfo>> {
        if let Some(c) = self.caches.commits.get(&id) {
            return Ok(c);
        }
        let info = self.with_repo(|repo| {
            let object = self.find(repo, id)?;
            if object.kind != gix::object::Kind::Commit {
                return Err(StoreError::WrongKind {
                    id,
                    expected: "commit",
                });
            }
            let read_err = |e: BoxError| StoreError::Read { id, source: e };
            let commit = gix::objs::CommitRef::from_bytes(&object.data, repo.object_hash())
                .map_err(|e| read_err(boxed(e)))?;
            let author = commit.author().map_err(|e| read_err(boxed(e)))?;
            let time = commit.time().map_err(|e| read_err(boxed(e)))?;
            Ok(CommitInfo {
                id,
                tree: commit.tree(),
                parents: commit.parents().collect(),
                author: author.name.to_string(),
                seconds: time.seconds,
                message: commit.message.to_string(),
            })
        })?;
        let info = Arc::new(info);
        self.caches.commits.insert(id, info.clone());
        Ok(info)
    }

    /// Up to `limit` commits reachable from `tip`, newest first (by commit time).
    pub fn log(&self, tip: ObjectId, limit: usize) -> Result<Vec<Arc<CommitInfo>>> {
        let ids: Vec<ObjectId> = self.with_repo(|repo| {
            let walk = repo
                .rev_walk([tip])
                .sorting(gix::revision::walk::Sorting::ByCommitTime(
                    Default::default(),
                ))
                .all()
                .map_err(|e| StoreError::Read {
                    id: tip,
                    source: boxed(e),
                })?;
            let mut ids = Vec::new();
            for info in walk.take(limit) {
                let info = info.map_err(|e| StoreError::Read {
                    id: tip,
                    source: boxed(e),
                })?;
                ids.push(info.id);
            }
            Ok::<_, StoreError>(ids)
        })?;
        ids.into_iter().map(|id| self.commit_info(id)).collect()
    }

    /// Whether `ancestor` is reachable from `descendant` (or equal to it). Not through gix's
    /// `merge_base`, which can answer with a redundant base (see `graph.rs`).
    pub fn is_ancestor(&self, ancestor: ObjectId, descendant: ObjectId) -> Result<bool> {
        self.descends_from(descendant, ancestor)
    }
    /// Writes the empty tree unless it is known to be stored. git's fsck wants every tree a
    /// commit names to exist, the empty one included, while gix (and `has_object`) treat it as
    /// always there: a commit of an empty store must write it.
    pub fn ensure_empty_tree(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.empty_tree_stored.load(Ordering::Relaxed) {
            return Ok(());
        }
        let id = self.empty_tree;
        let stored = self.with_repo(|repo| {
            use gix::objs::Exists as _;
            repo.objects.exists(&id)
        });
        if !stored {
            let tree = gix::objs::Tree::empty();
            self.write_loose("tree", |repo| {
                repo.write_object(&tree).map(|id| id.detach())
            })?;
        }
        self.empty_tree_stored.store(true, Ordering::Relaxed);
        Ok(())
    }
    /// Writes a commit object (moving no ref) and returns its id.
    pub fn write_commit(
        &self,
        tree: ObjectId,
        parents: &[ObjectId],
        author: &Signature,
        message: &str,
    ) -> Result<ObjectId> {
        if tree == self.empty_tree {
            self.ensure_empty_tree()?;
        }
        let time = gix::date::Time::new(author.seconds, 0);
        let sig = gix::actor::Signature {
            name: author.name.as_str().into(),
            email: author.email.as_str().into(),
            time,
        };
        let commit = gix::objs::Commit {
            tree,
            parents: parents.iter().copied().collect(),
            author: sig.clone(),
            committer: sig,
            encoding: None,
            message: message.into(),
            extra_headers: Vec::new(),
        };
        self.write_loose("commit", |repo| {
            repo.write_object(&commit).map(|id| id.detach())
        })
    }
}
