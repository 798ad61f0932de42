//! `gitdb serve`: a headless node, gossiping with its peers and syncing with its remotes (and
//! taking their merges, and commits made by stock git) without a mount, with the door open to
//! the client, until SIGINT/SIGTERM.

use std::sync::Arc;

use super::error::Result;
use super::target::{Access, Target};
use crate::gossip::cli::GossipArgs;

/// Runs the node on `target` as the flags say; returns once it stopped cleanly.
pub fn run(target: &Target, gossip: &GossipArgs) -> Result<u8> {
    // Checked before anything starts: a bad flag costs nothing.
    let cfg = gossip.config()?;
    let remote = gossip.remote_config()?;
    let db = Arc::new(target.open(Access::Write)?);
    let _door = crate::door::serve(db.clone())?;
    crate::gossip::serve_until_signalled(db, cfg, remote)?;
    Ok(0)
}
