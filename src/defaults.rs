//! Defaults shared by the binaries: where the repository lives and what the node is called
//! when the command line does not say. [`resolve`] is the one place both binaries (`gitdb`
//! through `crate::cli`, `gitdb-mount` through `crate::fuse::options`) turn their `--repo` and
//! `--node-id` into a repository and a node, so the two never name one node differently.
//! Outside the layers, as it is used by the mount's option parsing as well as by the client.

use std::path::PathBuf;

use crate::db::{ClockError, NodeId};

/// The repository and the node a command line means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub repo: PathBuf,
    pub node: NodeId,
}

/// `repo` and `node` (the node id) as given (flags, or `-o` options), else the defaults ([`repo_path`],
/// [`node_id`]). A node id given explicitly must be valid as it is (a typo is an error, not a
/// silently different node); one taken from the environment or the hostname is sanitized.
pub fn resolve(repo: Option<PathBuf>, node: Option<&str>) -> Result<Identity, ClockError> {
    Ok(Identity {
        repo: repo.unwrap_or_else(repo_path),
        node: match node {
            Some(id) => NodeId::new(id)?,
            None => node_id(),
        },
    })
}

/// `$GITDB_REPO`, else `<user data dir>/gitdb/repo.git` (`~/.local/share/gitdb/repo.git`, or
/// `$XDG_DATA_HOME/gitdb/repo.git`), created on first use.
pub fn repo_path() -> PathBuf {
    if let Some(p) = std::env::var_os("GITDB_REPO").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("gitdb")
        .join("repo.git")
}

/// `$GITDB_NODE_ID`, else the hostname made into a valid node id.
pub fn node_id() -> NodeId {
    if let Some(id) = std::env::var("GITDB_NODE_ID")
        .ok()
        .filter(|s| !s.is_empty())
    {
        return NodeId::sanitized(&id);
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".to_owned());
    NodeId::sanitized(&hostname)
}

/// Milliseconds since the Unix epoch, for commit timestamps.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_flags_win_and_an_explicit_bad_node_id_is_an_error() {
        let got = resolve(Some("/x/r.git".into()), Some("n-1")).unwrap();
        assert_eq!(got.repo, PathBuf::from("/x/r.git"));
        assert_eq!(got.node.as_str(), "n-1");
        assert_eq!(
            resolve(None, Some("a b")),
            Err(ClockError::InvalidNodeId("a b".into()))
        );
        // Without flags: the defaults, the same ones each time.
        let d = resolve(None, None).unwrap();
        assert_eq!((d.repo, d.node), (repo_path(), node_id()));
    }
}
