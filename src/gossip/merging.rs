//! A merge asked for by hand: `gitdb merge REV` merges a head already in the repository
//! (fetched by `git fetch` from another node, say) as an exchange would, with the same
//! deterministic merge, so a node that meets another by hand and by gossip agrees on one head.
//!
//! Here, in gossip, because gossip is the layer above merge: the binaries' level reaches merge
//! only through this file, as it reaches the store only through db, and db (below merge) offers
//! no merge verb, since a db that called up into merge would be the back door the layers forbid
//! (docs/design.md). The merge layer's nouns a caller needs to ask for a merge and read its
//! result are re-exported with it.

use crate::db::{GitDb, ObjectId};

pub use crate::merge::{MergeError, MergeOutcome, Strategy, merge_driver};

/// Merges `theirs` into `db`'s branch with `strategy`, at the local time. Without a peer's
/// clock: unlike an exchange, a head found in the repository comes with no announce, and its
/// own commits carry the clock the merge needs.
pub fn merge_head(
    db: &GitDb,
    theirs: ObjectId,
    strategy: &Strategy,
) -> Result<MergeOutcome, MergeError> {
    crate::merge::merge(db, theirs, None, strategy, crate::defaults::now_ms())
}
