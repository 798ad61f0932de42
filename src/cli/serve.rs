//! `gitdb serve`: a headless node, gossiping with its peers and syncing with its remotes (and
//! taking their merges, and commits made by stock git) without a mount, with the door open to
//! the client, until SIGINT/SIGTERM.

use std::sync::Arc;

use super::error::Result;
use super::target::{Access, Target};
use crate::db::TaskOptions;
use crate::gossip::cli::GossipArgs;

/// Runs the node on `target` as the flags say; returns once it stopped cleanly.
/// `tasks` are db's refresh and autocommit, run as a mount runs them and stopped on return.
pub fn run(target: &Target, gossip: &GossipArgs, tasks: TaskOptions) -> Result<u8> {
    // Checked before anything starts: a bad flag costs nothing.
    let cfg = gossip.config()?;
    let remote = gossip.remote_config()?;
    let db = Arc::new(target.open(Access::Write)?);
    let _door = crate::door::serve(db.clone())?;
    let _tasks = db.start_tasks(tasks)?;
    crate::gossip::serve_until_signalled(db, cfg, remote)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::CliError;

    #[test]
    fn a_bad_flag_is_refused_before_the_repository_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let t = Target::new(Some(dir.path().join("r.git")), None, "main".into()).unwrap();
        let stray = GossipArgs {
            fanout: Some(3),
            ..GossipArgs::default()
        };
        assert!(matches!(
            run(
                &t,
                &stray,
                TaskOptions {
                    refresh_interval: None,
                    autocommit: None
                }
            ),
            Err(CliError::GossipFlags(_))
        ));
        let timeout_alone = GossipArgs {
            remote_timeout: Some("5s".into()),
            ..GossipArgs::default()
        };
        assert!(matches!(
            run(
                &t,
                &timeout_alone,
                TaskOptions {
                    refresh_interval: None,
                    autocommit: None
                }
            ),
            Err(CliError::GossipFlags(_))
        ));
        assert!(!t.repo.exists());
    }
}
