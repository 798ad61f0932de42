//! What a `gitdb` command works on: the repository, the node and the branch its global flags
//! name, and how it opens them. One rule for every command: readers never take the writer
//! lock, so they work beside a running `gitdb-mount`, and never create a repository, so a
//! typo in `--repo` is an error rather than an empty store; writers create one if absent.

use std::path::PathBuf;

use super::error::{CliError, Result};
use crate::db::{DbError, NodeId, Options};
use crate::{GitDb, defaults};

/// Whether a command reads or writes the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// The repository, node and branch of one command line.
#[derive(Debug, Clone)]
pub struct Target {
    pub repo: PathBuf,
    pub node: NodeId,
    /// `--node-id` as given, if it was: a daemon that is another node refuses the client
    /// rather than commit under a name the client did not ask for.
    pub node_flag: Option<String>,
    pub branch: String,
}

impl Target {
    /// The target the global flags name (defaults as [`defaults::resolve`] gives them, the
    /// same resolution `gitdb-mount` uses).
    pub fn new(repo: Option<PathBuf>, node_id: Option<String>, branch: String) -> Result<Target> {
        let defaults::Identity { repo, node } = defaults::resolve(repo, node_id.as_deref())?;
        Ok(Target {
            repo,
            node,
            node_flag: node_id,
            branch,
        })
    }

    /// Fails for a reader when there is no repository (before anything else is tried: the
    /// door, a direct open).
    pub fn check(&self, access: Access) -> Result<()> {
        if access == Access::Read && !self.repo.exists() {
            return Err(CliError::NoRepository {
                path: self.repo.clone(),
            });
        }
        Ok(())
    }

    /// Opens the repository for `access` (a reader read-only, a writer creating it if absent),
    /// without [`Target::check`] (the door's client calls this only when no daemon answers).
    pub fn open_db(&self, access: Access) -> Result<GitDb, DbError> {
        let writes = access == Access::Write;
        GitDb::open(
            &self.repo,
            self.node.clone(),
            Options {
                branch: self.branch.clone(),
                read_only: !writes,
                create: writes,
                ..Options::default()
            },
        )
    }

    /// [`Target::check`], then [`Target::open_db`].
    pub fn open(&self, access: Access) -> Result<GitDb> {
        self.check(access)?;
        Ok(self.open_db(access)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(repo: PathBuf) -> Target {
        Target::new(Some(repo), Some("n1".into()), "main".into()).unwrap()
    }

    #[test]
    fn a_reader_never_creates_a_repository_a_writer_does() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path().join("typo.git"));
        assert!(matches!(
            t.open(Access::Read),
            Err(CliError::NoRepository { path }) if path == t.repo
        ));
        assert!(!t.repo.exists());
        let db = t.open(Access::Write).unwrap();
        assert!(!db.is_read_only());
        drop(db);
        assert!(t.open(Access::Read).unwrap().is_read_only());
    }

    #[test]
    fn a_bad_node_id_is_refused_and_an_absent_one_is_not_a_flag() {
        assert!(matches!(
            Target::new(None, Some("no spaces".into()), "main".into()),
            Err(CliError::Node(_))
        ));
        let t = Target::new(Some("r.git".into()), None, "b".into()).unwrap();
        assert_eq!((t.node, t.node_flag), (crate::defaults::node_id(), None));
    }
}
