//! Directory listings: what READDIR and READDIRPLUS list for a key directory (the db's
//! entries, kept directories, pending files) or a control directory, taken as snapshots (see
//! [`super::dirs`]).

use std::sync::Arc;
use std::time::Duration;

use fuser::{Errno, FileAttr, FileType, INodeNo};

use super::attrs::{kind_of, node_kind};
use super::control::{self, CtlNode};
use super::dirs::{self, DirSnapshots};
use super::errno::db_err;
use super::fscore::FsCore;
use super::shared::lock;
use crate::paths::{below, child_of, split};

use crate::db::DbError;

impl FsCore {
    /// READDIR of `ino` from `offset`: `add(ino, cookie, kind, name)` for each entry until it
    /// answers true (the reply is full).
    pub(crate) fn readdir(
        &self,
        ino: INodeNo,
        offset: u64,
        mut add: impl FnMut(INodeNo, u64, FileType, &str) -> bool,
    ) -> Result<(), Errno> {
        let (listing, start) = self.listing(ino, offset)?;
        for (i, (ino, kind, name)) in listing.entries.iter().enumerate().skip(start) {
            if add(INodeNo(*ino), listing.cookie(i), *kind, name) {
                break;
            }
        }
        Ok(())
    }

    /// READDIRPLUS of `ino` from `offset`: `add(cookie, name, attr, ttl)` for each entry
    /// until it answers true (the reply is full).
    pub(crate) fn readdirplus(
        &self,
        ino: INodeNo,
        offset: u64,
        mut add: impl FnMut(u64, &str, &FileAttr, &Duration) -> bool,
    ) -> Result<(), Errno> {
        let (listing, start) = self.listing(ino, offset)?;
        let Ok(dir) = self.path_of(ino) else {
            return Err(Errno::ENOENT);
        };
        let mut child = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let base = child.len();
        for (i, (_, _, name)) in listing.entries.iter().enumerate().skip(start) {
            // `.` and `..` carry no lookup (the kernel skips them): their own attributes.
            let found = if name == "." || name == ".." {
                let path = if name == "." {
                    dir.as_str()
                } else {
                    split(&dir).0
                };
                self.getattr_path(path)
            } else {
                child.truncate(base);
                child.push_str(name);
                self.getattr_path(&child)
            };
            // An entry gone since the listing was taken is left out, as a later listing would.
            let Ok((attr, ttl)) = found else {
                continue;
            };
            if add(listing.cookie(i), name, &attr, &ttl) {
                break;
            }
        }
        Ok(())
    }
}

impl FsCore {
    pub(super) fn list_dir(&self, path: &str) -> Result<Vec<(u64, FileType, String)>, Errno> {
        let mut out: Vec<(FileType, String)> = Vec::new();
        if let Some(node) = control::parse(path) {
            match node {
                CtlNode::Dir => {
                    for (name, is_dir) in control::ENTRIES {
                        let kind = if is_dir {
                            FileType::Directory
                        } else {
                            FileType::RegularFile
                        };
                        out.push((kind, name.to_owned()));
                    }
                }
                CtlNode::HistoryDir => {
                    for e in self.db().log(control::LOG_LEN).map_err(|e| db_err(&e))? {
                        out.push((FileType::Directory, e.id));
                    }
                }
                CtlNode::History { commit, path: p } => {
                    let entries = self
                        .db()
                        .list_at(&commit.to_string(), &p)
                        .map_err(|e| db_err(&e))?;
                    for e in entries {
                        out.push((node_kind(e.kind), e.name));
                    }
                }
                _ => return Err(Errno::ENOTDIR),
            }
        } else {
            match self.db().list(path) {
                Ok(entries) => {
                    for e in entries {
                        out.push((node_kind(e.kind), e.name));
                    }
                }
                Err(DbError::NotFound { .. }) if self.is_empty_dir(path) => {}
                Err(e) => return Err(db_err(&e)),
            }
            {
                let dirs = lock(&self.s.empty_dirs);
                let mut kept = dirs
                    .range::<str, _>(below(path))
                    .filter_map(|d| child_of(path, d))
                    .peekable();
                if kept.peek().is_some() {
                    let listed: std::collections::HashSet<String> =
                        out.iter().map(|(_, n)| n.clone()).collect();
                    let extra: Vec<String> = kept
                        .filter(|rest| !listed.contains(*rest))
                        .map(str::to_owned)
                        .collect();
                    out.extend(extra.into_iter().map(|n| (FileType::Directory, n)));
                }
            }
            {
                let pending = lock(&self.s.pending);
                let files: Vec<(FileType, String)> = pending
                    .range::<str, _>(below(path))
                    .filter_map(|(p, m)| Some((kind_of(*m).0, child_of(path, p)?.to_owned())))
                    .collect();
                drop(pending);
                if !files.is_empty() {
                    let listed: std::collections::HashSet<String> =
                        out.iter().map(|(_, n)| n.clone()).collect();
                    out.extend(files.into_iter().filter(|(_, n)| !listed.contains(n)));
                }
            }
            if path.is_empty() {
                out.push((FileType::Directory, control::DIR.to_owned()));
            }
        }
        let mut table = lock(&self.s.inodes);
        let self_ino = table.ino(path);
        let parent_ino = table.ino(split(path).0);
        let mut listing = vec![
            (self_ino, FileType::Directory, ".".to_owned()),
            (parent_ino, FileType::Directory, "..".to_owned()),
        ];
        let mut child = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let base = child.len();
        listing.reserve(out.len());
        for (kind, name) in out {
            child.truncate(base);
            child.push_str(&name);
            let ino = table.ino(&child);
            listing.push((ino, kind, name));
        }
        Ok(listing)
    }

    /// The listing READDIR(PLUS) at `offset` of directory `ino` reads from, and the index to
    /// go on from (see [`DirSnapshots`]).
    pub(super) fn listing(
        &self,
        ino: INodeNo,
        offset: u64,
    ) -> Result<(Arc<dirs::Listing>, usize), Errno> {
        if let Some(found) = self.s.dirs.find(ino.0, offset) {
            return Ok(found);
        }
        // `list_dir` itself answers ENOTDIR/ENOENT for what is not a directory: no separate
        // lookup of the directory first.
        let entries = self.list_dir(&self.path_of(ino)?)?;
        // A cookie from a snapshot that is gone: go on from the same position in a fresh
        // listing (only entries changed meanwhile can be missed or repeated).
        let start = if offset == 0 {
            0
        } else {
            DirSnapshots::index(offset)
        };
        Ok((self.s.dirs.insert(ino.0, entries), start))
    }
}
