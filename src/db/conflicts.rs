//! Where conflicted keys are recorded, and how they are read back: part of what a commit
//! says about itself, beside its stamp, so db owns the format; the merge layer writes it
//! through [`conflict_trailers`], and readers (the mount's `/.gitdb/conflicts`, the client)
//! ask db ([`GitDb::conflicts`]).
//!
//! A merge commit lists every key in conflict *at that commit* in its trailers, one per key:
//!
//! ```text
//! Gitdb-Conflict: users/alice/profile
//! Gitdb-Conflict: config~conflict-node-b
//! ```
//!
//! (`%`, CR and LF in a key are written `%25`, `%0D`, `%0A`.) The list is carried forward by
//! later merges for as long as the conflicted value survives, so it is a property of the
//! history, the same on every node. [`conflicts_at`] reads it from a head: it walks back along
//! first parents through ordinary commits to the nearest merge commit, collecting the keys those
//! commits changed; the merge's list minus those keys is the answer — writing (or deleting) a
//! key resolves it. The walk is bounded by [`MAX_WALK`] commits: a longer run of ordinary
//! commits since the last merge means no conflicts are listed. This is what the mount shows as
//! `/.gitdb/conflicts` (committed state; uncommitted writes are not subtracted).

use std::collections::BTreeSet;

use crate::db::GitDb;
use crate::store::{ObjectId, Result, Store};

/// Trailer naming one conflicted key.
pub const TRAILER_CONFLICT: &str = "Gitdb-Conflict";
/// How many ordinary commits [`conflicts_at`] walks back looking for a merge.
pub const MAX_WALK: usize = 1024;

/// The trailer lines for `keys` (each ending in a newline).
pub fn conflict_trailers(keys: &[String]) -> String {
    keys.iter()
        .map(|k| format!("{TRAILER_CONFLICT}: {}\n", escape(k)))
        .collect()
}

/// The keys listed in a commit message's conflict trailers.
pub fn parse_conflicts(message: &str) -> Vec<String> {
    let last_paragraph = message.trim_end().rsplit("\n\n").next().unwrap_or("");
    let prefix = format!("{TRAILER_CONFLICT}: ");
    last_paragraph
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(unescape)
        .collect()
}

fn escape(key: &str) -> String {
    key.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn unescape(s: &str) -> String {
    s.replace("%0A", "\n")
        .replace("%0D", "\r")
        .replace("%25", "%")
}

/// The keys in conflict at commit `head`, sorted (see the module docs).
pub fn conflicts_at(store: &Store, head: ObjectId) -> Result<Vec<String>> {
    let mut changed = BTreeSet::new();
    let mut at = head;
    for _ in 0..MAX_WALK {
        let info = store.commit_info(at)?;
        match info.parents.as_slice() {
            [] => return Ok(Vec::new()),
            [parent] => {
                let ptree = store.commit_info(*parent)?.tree;
                let diff = store.diff_trees(ptree, info.tree)?;
                changed.extend(diff.into_iter().map(|c| c.path));
                at = *parent;
            }
            _ => {
                let mut keys: Vec<String> = parse_conflicts(&info.message)
                    .into_iter()
                    .filter(|k| !changed.contains(k))
                    .collect();
                keys.sort();
                keys.dedup();
                return Ok(keys);
            }
        }
    }
    Ok(Vec::new())
}

impl GitDb {
    /// The keys in conflict at the committed head, sorted (what `/.gitdb/conflicts` shows).
    pub fn conflicts(&self) -> crate::db::Result<Vec<String>> {
        match self.head() {
            Some(head) => Ok(conflicts_at(&self.store, head)?),
            None => Ok(Vec::new()),
        }
    }
}
