//! Defaults shared by the binaries: where the repository lives and what the node is called
//! when the command line does not say.

use std::path::PathBuf;

use crate::db::NodeId;

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
