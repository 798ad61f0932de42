//! Node-local metadata: the permission bits and the owner and group of each path, which git
//! trees cannot hold (git keeps only the executable bit, which stays the one bit that
//! replicates).
//!
//! Kept beside the repository in `<git-dir>/gitdb/meta`, never in a tree or a commit, so it
//! never reaches another node: a value that arrives from a peer has no entry and shows the
//! mount's defaults (`-o uid=,gid=,umask=`). Only paths whose metadata differs from those
//! defaults have an entry ([`MetaMap`], a `BTreeMap` from tree path to [`Meta`]), so the map
//! stays small, and `stat` reads it with one lookup in memory, never from disk.
//!
//! The map follows the names it describes: a rename moves the entries at and below the old
//! name to the new one (replacing what the new name had), a delete drops the entries at and
//! below the name. Every change is first appended to the log file, in the working journal's
//! framing (`[len][crc32][postcard]`, see [`super::journal`]) behind its own magic line, so a
//! `kill -9` loses nothing that was answered and a torn tail is dropped whole at the next
//! open. The log is compacted (rewritten atomically from the map) once it holds many more
//! records than the map has entries.

mod log_file;
mod meta_store;
#[cfg(test)]
mod tests;

pub use log_file::{MetaError, MetaLog, Undo, decode};
pub use meta_store::MetaStore;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The mode bits a path may carry: permissions, setuid, setgid, sticky.
pub const MODE_BITS: u32 = 0o7777;

/// The x bits of a mode. Any one of them makes a value executable, the one bit of a mode that
/// git keeps and that replicates: what a chmod sends to git and what `stat` shows agree.
pub const EXEC_BITS: u32 = 0o111;

/// Whether permission bits `mode` make a file executable (any x bit: what git's one bit says).
pub fn is_executable(mode: u32) -> bool {
    mode & EXEC_BITS != 0
}

/// What `stat` shows of a path besides its type, size and times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Meta {
    /// Permission, setuid, setgid and sticky bits (`MODE_BITS`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The kind of node whose metadata is asked for (the defaults differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeType {
    /// A value; `executable` is the bit git keeps (and replicates).
    File {
        executable: bool,
    },
    Dir,
    /// Symlinks always show 0777 (as on Linux); only their owner is kept.
    Symlink,
}

/// What a path without an entry shows: the `-o uid=,gid=,umask=` of the mount (vfat and rclone
/// mount's convention), by default the mounting user and umask 022 (644/755 files, 755
/// directories).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    pub uid: u32,
    pub gid: u32,
    pub umask: u32,
}

impl Defaults {
    /// The mode bits of a node of type `t` without an entry.
    pub fn mode(&self, t: NodeType) -> u32 {
        let full = match t {
            NodeType::File { executable: false } => 0o666,
            NodeType::File { executable: true } | NodeType::Dir => 0o777,
            NodeType::Symlink => return 0o777,
        };
        full & !self.umask & MODE_BITS
    }

    /// What a node of type `t` without an entry shows.
    pub fn meta(&self, t: NodeType) -> Meta {
        Meta {
            mode: self.mode(t),
            uid: self.uid,
            gid: self.gid,
        }
    }

    /// What a node of type `t` shows, given its entry (`stored`). A value's executable bit
    /// comes from git, since it replicates: when a peer (or stock git) flipped it, the stored
    /// bits follow it — x where r is when it was set, no x when it was cleared — as
    /// `git checkout` turns 644 into 755.
    pub fn resolve(&self, t: NodeType, stored: Option<Meta>) -> Meta {
        let Some(mut m) = stored else {
            return self.meta(t);
        };
        match t {
            NodeType::Symlink => m.mode = 0o777,
            NodeType::Dir => {}
            NodeType::File { executable } => {
                let has_x = is_executable(m.mode);
                if executable && !has_x {
                    m.mode |= (m.mode & 0o444) >> 2;
                    if !is_executable(m.mode) {
                        m.mode |= 0o100;
                    }
                } else if !executable && has_x {
                    m.mode &= !EXEC_BITS;
                }
            }
        }
        m.mode &= MODE_BITS;
        m
    }

    /// The entry to keep for `meta` on a node of type `t`: none when it is what the node
    /// shows without one (so the map holds only what differs from the defaults).
    pub fn entry(&self, t: NodeType, meta: Meta) -> Option<Meta> {
        let meta = Meta {
            mode: meta.mode & MODE_BITS,
            ..meta
        };
        (self.resolve(t, None) != self.resolve(t, Some(meta))).then_some(meta)
    }
}

/// One change of the map, as the log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaRecord {
    /// `path`'s entry (`None`: back to the defaults). Nothing below `path` changes.
    Set { path: String, meta: Option<Meta> },
    /// The entries at and below `path` go (a delete).
    Drop { path: String },
    /// The entries at and below `to` go, those at and below `from` move there (a rename).
    Move { from: String, to: String },
    /// A `Drop` or `Move` that follows an uncommitted delete or rename: applied as that
    /// record, and undone if the working layer is rolled back (the names come back, and with
    /// them their metadata: a rolled-back `rm secret` must not bring `secret` back 0644).
    Staged(Box<MetaRecord>),
    /// A commit or a rollback: the undo entries kept for a rollback go, but for the last
    /// `keep` (staged after the commit took its snapshot).
    Settled { keep: u64 },
    /// An undo entry, as a compaction writes one out (changes nothing in the map).
    Undo(Vec<MetaRecord>),
}

/// Paths (tree paths, `""` the root) to the metadata that differs from the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaMap {
    entries: BTreeMap<String, Meta>,
}

impl MetaMap {
    pub fn get(&self, path: &str) -> Option<Meta> {
        self.entries.get(path).copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Meta)> {
        self.entries.iter()
    }

    pub fn apply(&mut self, record: &MetaRecord) {
        match record {
            MetaRecord::Set {
                path,
                meta: Some(m),
            } => {
                self.entries.insert(path.clone(), *m);
            }
            MetaRecord::Set { path, meta: None } => {
                self.entries.remove(path);
            }
            MetaRecord::Drop { path } => {
                for p in self.at_or_below(path) {
                    self.entries.remove(&p);
                }
            }
            MetaRecord::Staged(inner) => self.apply(inner),
            MetaRecord::Settled { .. } | MetaRecord::Undo(_) => {}
            MetaRecord::Move { from, to } => {
                if from == to {
                    return;
                }
                let moved: Vec<(String, Meta)> = self
                    .at_or_below(from)
                    .into_iter()
                    .filter_map(|p| self.entries.remove(&p).map(|m| (p, m)))
                    .collect();
                for p in self.at_or_below(to) {
                    self.entries.remove(&p);
                }
                for (p, m) in moved {
                    self.entries.insert(format!("{to}{}", &p[from.len()..]), m);
                }
            }
        }
    }

    /// The records that undo `record` on this map (before it is applied).
    fn inverse(&self, record: &MetaRecord) -> Vec<MetaRecord> {
        let restore = |paths: Vec<String>| {
            paths
                .into_iter()
                .map(|p| MetaRecord::Set {
                    meta: self.get(&p),
                    path: p,
                })
                .collect::<Vec<_>>()
        };
        match record {
            MetaRecord::Drop { path } => restore(self.at_or_below(path)),
            MetaRecord::Move { from, to } if from != to => {
                let mut inv = vec![MetaRecord::Move {
                    from: to.clone(),
                    to: from.clone(),
                }];
                inv.extend(restore(self.at_or_below(to)));
                inv
            }
            MetaRecord::Staged(inner) => self.inverse(inner),
            _ => Vec::new(),
        }
    }

    /// The paths with an entry at or below `path` (all of them for the root).
    fn at_or_below(&self, path: &str) -> Vec<String> {
        crate::paths::at_or_below(&self.entries, path)
            .map(|(k, _)| k.clone())
            .collect()
    }
}
