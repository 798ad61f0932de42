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

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::journal::{decode_frames, encode_frame, replace_file};

const MAGIC: &[u8; 8] = b"GITDBM1\n";

/// The log is rewritten from the map once it holds this many records more than the map has
/// entries (a file chmod-ed all day costs neither disk nor replay time).
const COMPACT_SLACK: usize = 4096;

/// The mode bits a path may carry: permissions, setuid, setgid, sticky.
pub const MODE_BITS: u32 = 0o7777;

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
                let has_x = m.mode & 0o111 != 0;
                if executable && !has_x {
                    m.mode |= (m.mode & 0o444) >> 2;
                    if m.mode & 0o111 == 0 {
                        m.mode |= 0o100;
                    }
                } else if !executable && has_x {
                    m.mode &= !0o111;
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
        if path.is_empty() {
            return self.entries.keys().cloned().collect();
        }
        let mut out: Vec<String> = self
            .entries
            .get_key_value(path)
            .map(|(k, _)| k.clone())
            .into_iter()
            .collect();
        // `0` follows `/` in byte order: the range is exactly the paths under `path/`.
        out.extend(
            self.entries
                .range(format!("{path}/")..format!("{path}0"))
                .map(|(k, _)| k.clone()),
        );
        out
    }
}

/// Errors of the metadata log, each naming its file.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An append failed and could not be cut back: appending more would put records behind a
    /// torn one, which replay never reaches. A compaction (at the next open at the latest)
    /// starts a good file again.
    #[error("metadata log {path} refuses appends: a failed append could not be cut back ({cause})")]
    Poisoned { path: PathBuf, cause: String },
    #[error("the repository was opened read-only: metadata of {path:?} cannot change")]
    ReadOnly { path: String },
}

impl MetaError {
    /// The I/O error underneath, if this is one.
    pub fn io(&self) -> Option<&std::io::Error> {
        match self {
            MetaError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The open log file, positioned for appending.
pub struct MetaLog {
    path: PathBuf,
    file: File,
    /// Length of the good records: where the next append goes, what a failed one is cut to.
    len: u64,
    dirty: bool,
    /// Records in the file, to decide when to compact it.
    records: usize,
    poisoned: Option<String>,
}

impl MetaLog {
    /// Opens (or creates) the log at `path` and returns it with the map it holds; a torn or
    /// corrupt tail is cut off.
    pub fn open(path: &Path) -> Result<(MetaLog, MetaMap, Undo), MetaError> {
        let io = |source| MetaError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(io)?;
        let (records, good) = decode(&data);
        let good = if good == 0 {
            file.set_len(0).map_err(io)?;
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            file.write_all(MAGIC).map_err(io)?;
            file.sync_all().map_err(io)?;
            MAGIC.len()
        } else {
            if good < data.len() {
                log::warn!(
                    "metadata log {}: dropping {} bytes of torn or corrupt tail",
                    path.display(),
                    data.len() - good
                );
                file.set_len(good as u64).map_err(io)?;
                file.sync_all().map_err(io)?;
            }
            good
        };
        file.seek(SeekFrom::Start(good as u64)).map_err(io)?;
        let (map, undo) = replay(&records);
        let log = MetaLog {
            path: path.to_owned(),
            file,
            len: good as u64,
            dirty: false,
            records: records.len(),
            poisoned: None,
        };
        Ok((log, map, undo))
    }

    /// The map a log holds, without opening it for writing (read-only handles).
    pub fn read(path: &Path) -> Result<(MetaMap, Undo), MetaError> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(MetaError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Ok(replay(&decode(&data).0))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record with a single write (durable after [`MetaLog::sync`]). A failed
    /// write is cut back, so the file always ends with a good record.
    pub fn append(&mut self, record: &MetaRecord) -> Result<(), MetaError> {
        if let Some(cause) = &self.poisoned {
            return Err(MetaError::Poisoned {
                path: self.path.clone(),
                cause: cause.clone(),
            });
        }
        let buf = encode_frame(record).map_err(|source| self.io(source))?;
        if let Err(e) = self.file.write_all(&buf) {
            let len = self.len;
            let cut = self
                .file
                .set_len(len)
                .and_then(|()| self.file.seek(SeekFrom::Start(len)).map(drop));
            if let Err(cut) = cut {
                self.poisoned = Some(format!("{e}; cutting back: {cut}"));
            }
            return Err(self.io(e));
        }
        self.len += buf.len() as u64;
        self.records += 1;
        self.dirty = true;
        Ok(())
    }

    fn io(&self, source: std::io::Error) -> MetaError {
        MetaError::Io {
            path: self.path.clone(),
            source,
        }
    }

    pub fn sync(&mut self) -> Result<(), MetaError> {
        if self.dirty {
            self.file.sync_data().map_err(|e| self.io(e))?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Whether the log holds enough dead records to be worth rewriting from `map`.
    pub fn wants_compaction(&self, map: &MetaMap, undo: &Undo) -> bool {
        self.records > map.len() + undo.len() + COMPACT_SLACK || self.poisoned.is_some()
    }

    /// Replaces the file by one `Set` per entry of `map`, atomically and durably (temp file,
    /// fsync, rename, fsync of the directory). On failure the old file is still the log.
    pub fn compact(&mut self, map: &MetaMap, undo: &Undo) -> Result<(), MetaError> {
        let tmp = self.path.with_extension("tmp");
        let mut out = Vec::with_capacity(MAGIC.len() + map.len() * 32);
        out.extend_from_slice(MAGIC);
        for (path, meta) in map.iter() {
            let r = MetaRecord::Set {
                path: path.clone(),
                meta: Some(*meta),
            };
            out.extend_from_slice(&encode_frame(&r).map_err(|e| self.io(e))?);
        }
        for entry in undo {
            let r = MetaRecord::Undo(entry.clone());
            out.extend_from_slice(&encode_frame(&r).map_err(|e| self.io(e))?);
        }
        let file = replace_file(&tmp, &self.path, &out).map_err(|e| self.io(e))?;
        // The temp file's handle is the log now (the rename kept its inode), positioned at
        // its end.
        self.file = file;
        self.len = out.len() as u64;
        self.records = map.len() + undo.len();
        self.dirty = false;
        self.poisoned = None;
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| self.io(e))?;
        }
        Ok(())
    }
}

/// What a rollback applies, newest entry last: per staged record, the records that undo it.
pub type Undo = Vec<Vec<MetaRecord>>;

/// The map and the undo entries that `records` leave, applied in order.
fn replay(records: &[MetaRecord]) -> (MetaMap, Undo) {
    let mut map = MetaMap::default();
    let mut undo = Undo::new();
    for r in records {
        note_undo(&mut undo, &map, r);
        map.apply(r);
    }
    (map, undo)
}

/// Keeps `undo` up to date with `record`, about to be applied to `map`.
fn note_undo(undo: &mut Undo, map: &MetaMap, record: &MetaRecord) {
    match record {
        MetaRecord::Staged(_) => undo.push(map.inverse(record)),
        MetaRecord::Settled { keep } => {
            let keep = usize::try_from(*keep).unwrap_or(usize::MAX).min(undo.len());
            undo.drain(..undo.len() - keep);
        }
        MetaRecord::Undo(entry) => undo.push(entry.clone()),
        _ => {}
    }
}

/// The path a record is about, for errors.
fn record_path(record: &MetaRecord) -> String {
    match record {
        MetaRecord::Set { path, .. } | MetaRecord::Drop { path } => path.clone(),
        MetaRecord::Move { from, .. } => from.clone(),
        MetaRecord::Staged(inner) => record_path(inner),
        MetaRecord::Settled { .. } | MetaRecord::Undo(_) => String::new(),
    }
}

/// Records of a whole log file and the length of its good prefix (0: no magic line).
pub fn decode(data: &[u8]) -> (Vec<MetaRecord>, usize) {
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        return (Vec::new(), 0);
    }
    let (records, good, _) = decode_frames(data, MAGIC.len());
    (records, good)
}

/// The map and its log, as the db holds them (behind one lock: see the db's lock order).
pub struct MetaStore {
    map: MetaMap,
    /// How to undo the staged records since the last commit (see [`MetaRecord::Staged`]).
    undo: Undo,
    /// `None` for a read-only handle.
    log: Option<MetaLog>,
}

impl MetaStore {
    /// Opens the log at `path` for writing, or only reads it (`read_only`).
    pub fn open(path: &Path, read_only: bool) -> Result<MetaStore, MetaError> {
        if read_only {
            let (map, undo) = MetaLog::read(path)?;
            return Ok(MetaStore {
                map,
                undo,
                log: None,
            });
        }
        let (mut log, map, undo) = MetaLog::open(path)?;
        if log.wants_compaction(&map, &undo)
            && let Err(e) = log.compact(&map, &undo)
        {
            log::warn!("metadata log compaction failed, retried later: {e}");
        }
        Ok(MetaStore {
            map,
            undo,
            log: Some(log),
        })
    }

    pub fn get(&self, path: &str) -> Option<Meta> {
        self.map.get(path)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Logs `record`, then applies it. A record that changes nothing is not logged, so the
    /// deletes and renames of paths that never had metadata (nearly all of them) cost no I/O.
    pub fn apply(&mut self, record: MetaRecord) -> Result<(), MetaError> {
        if !self.changes(&record) {
            return Ok(());
        }
        let Some(log) = self.log.as_mut() else {
            return Err(MetaError::ReadOnly {
                path: record_path(&record),
            });
        };
        log.append(&record)?;
        note_undo(&mut self.undo, &self.map, &record);
        self.map.apply(&record);
        if log.wants_compaction(&self.map, &self.undo)
            && let Err(e) = log.compact(&self.map, &self.undo)
        {
            log::warn!("metadata log compaction failed, retried later: {e}");
        }
        Ok(())
    }

    /// How many undo entries a rollback would apply now (a commit's mark, see
    /// [`MetaStore::settle`]).
    pub fn undo_len(&self) -> usize {
        self.undo.len()
    }

    /// A commit is done: forget the undo entries staged before its snapshot (`mark`, what
    /// [`MetaStore::undo_len`] said then); later ones still belong to the working layer.
    pub fn settle(&mut self, mark: usize) -> Result<(), MetaError> {
        if self.undo.is_empty() {
            return Ok(());
        }
        let keep = self.undo.len().saturating_sub(mark) as u64;
        self.apply(MetaRecord::Settled { keep })
    }

    /// The working layer was dropped: the names its deletes and renames took away are back,
    /// so their metadata comes back too (newest first), then nothing is left to undo.
    pub fn rollback(&mut self) -> Result<(), MetaError> {
        while let Some(entry) = self.undo.pop() {
            for r in entry {
                if let Err(e) = self.apply(r) {
                    self.undo.clear();
                    return Err(e);
                }
            }
        }
        self.apply(MetaRecord::Settled { keep: 0 })
    }

    /// Whether applying `record` would change the map.
    fn changes(&self, record: &MetaRecord) -> bool {
        match record {
            MetaRecord::Staged(inner) => self.changes(inner),
            MetaRecord::Settled { keep } => (*keep as usize) < self.undo.len(),
            MetaRecord::Undo(_) => true,
            MetaRecord::Set { path, meta } => self.map.get(path) != *meta,
            MetaRecord::Drop { path } => !self.map.at_or_below(path).is_empty(),
            MetaRecord::Move { from, to } => {
                from != to
                    && !(self.map.at_or_below(from).is_empty()
                        && self.map.at_or_below(to).is_empty())
            }
        }
    }

    pub fn sync(&mut self) -> Result<(), MetaError> {
        match self.log.as_mut() {
            Some(log) => log.sync(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(mode: u32, uid: u32) -> Meta {
        Meta { mode, uid, gid: 7 }
    }

    fn set(path: &str, meta: Meta) -> MetaRecord {
        MetaRecord::Set {
            path: path.into(),
            meta: Some(meta),
        }
    }

    const D: Defaults = Defaults {
        uid: 1000,
        gid: 1000,
        umask: 0o022,
    };

    #[test]
    fn defaults_and_the_replicated_executable_bit() {
        let file = NodeType::File { executable: false };
        let exe = NodeType::File { executable: true };
        assert_eq!(D.resolve(file, None).mode, 0o644);
        assert_eq!(D.resolve(exe, None).mode, 0o755);
        assert_eq!(D.resolve(NodeType::Dir, None).mode, 0o755);
        assert_eq!(D.resolve(NodeType::Symlink, None).mode, 0o777);
        let d077 = Defaults { umask: 0o077, ..D };
        assert_eq!(d077.resolve(file, None).mode, 0o600);
        assert_eq!(d077.resolve(NodeType::Dir, None).mode, 0o700);
        // Stored bits agree with git's bit: shown as they are.
        assert_eq!(D.resolve(file, Some(m(0o600, 1))).mode, 0o600);
        assert_eq!(D.resolve(exe, Some(m(0o4711, 1))).mode, 0o4711);
        // A peer set the bit: x where r is; a peer cleared it: no x.
        assert_eq!(D.resolve(exe, Some(m(0o640, 1))).mode, 0o750);
        assert_eq!(D.resolve(exe, Some(m(0o000, 1))).mode, 0o100);
        assert_eq!(D.resolve(file, Some(m(0o750, 1))).mode, 0o640);
        assert_eq!(D.resolve(NodeType::Symlink, Some(m(0o600, 5))), m(0o777, 5));
        // Only what differs from the defaults is kept.
        assert_eq!(D.entry(file, D.meta(file)), None);
        assert_eq!(
            D.entry(file, m(0o644 | 0o170000, 1000)),
            Some(m(0o644, 1000))
        );
        assert_eq!(
            D.entry(
                NodeType::Symlink,
                Meta {
                    mode: 0o755,
                    uid: 1000,
                    gid: 1000
                }
            ),
            None
        );
    }

    #[test]
    fn moves_and_drops_follow_the_tree() {
        let mut map = MetaMap::default();
        for p in ["a", "a/b", "a/b/c", "ab", "a0", "x"] {
            map.apply(&set(p, m(0o600, 1)));
        }
        map.apply(&set("y/z", m(0o700, 2)));
        map.apply(&MetaRecord::Move {
            from: "a".into(),
            to: "y".into(),
        });
        let paths: Vec<&str> = map.iter().map(|(p, _)| p.as_str()).collect();
        // `a` and below moved, `y/z` (replaced by the move) is gone, `ab` and `a0` stayed.
        assert_eq!(paths, ["a0", "ab", "x", "y", "y/b", "y/b/c"]);
        map.apply(&MetaRecord::Drop { path: "y/b".into() });
        let paths: Vec<&str> = map.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["a0", "ab", "x", "y"]);
        map.apply(&MetaRecord::Drop { path: "".into() });
        assert!(map.is_empty());
    }

    #[test]
    fn the_log_survives_reopen_and_drops_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta");
        let mut store = MetaStore::open(&path, false).unwrap();
        store.apply(set("a", m(0o600, 1))).unwrap();
        store.apply(set("d/f", m(0o640, 2))).unwrap();
        store
            .apply(MetaRecord::Move {
                from: "d".into(),
                to: "e".into(),
            })
            .unwrap();
        store.sync().unwrap();
        drop(store);
        let store = MetaStore::open(&path, false).unwrap();
        assert_eq!(store.get("a"), Some(m(0o600, 1)));
        assert_eq!(store.get("e/f"), Some(m(0o640, 2)));
        assert_eq!(store.get("d/f"), None);
        drop(store);
        // Every cut of the last record leaves the records before it.
        let full = std::fs::read(&path).unwrap();
        let last = encode_frame(&MetaRecord::Move {
            from: "d".into(),
            to: "e".into(),
        })
        .unwrap()
        .len();
        for cut in full.len() - last..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let mut store = MetaStore::open(&path, false).unwrap();
            assert_eq!(store.get("d/f"), Some(m(0o640, 2)), "cut at {cut}");
            store.apply(set("z", m(0o400, 3))).unwrap();
            drop(store);
            let store = MetaStore::open(&path, true).unwrap();
            assert_eq!(store.get("z"), Some(m(0o400, 3)), "append after cut {cut}");
        }
    }

    #[test]
    fn records_that_change_nothing_are_not_logged_and_compaction_keeps_the_map() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta");
        let mut store = MetaStore::open(&path, false).unwrap();
        let empty = std::fs::metadata(&path).unwrap().len();
        store.apply(MetaRecord::Drop { path: "x".into() }).unwrap();
        store
            .apply(MetaRecord::Move {
                from: "x".into(),
                to: "y".into(),
            })
            .unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), empty);
        for i in 0..(COMPACT_SLACK as u32 + 10) {
            store.apply(set("hot", m(0o600 + (i % 2), 1))).unwrap();
        }
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        assert!(len < 200 * 32, "not compacted: {len} bytes");
        let want = store.get("hot");
        drop(store);
        assert_eq!(MetaStore::open(&path, true).unwrap().get("hot"), want);
    }

    fn staged(r: MetaRecord) -> MetaRecord {
        MetaRecord::Staged(Box::new(r))
    }

    /// A rollback brings back the metadata of names its dropped deletes and renames took
    /// away (newest first); a commit settles them; both through reopens and a compaction.
    #[test]
    fn a_rollback_undoes_staged_drops_and_moves_a_commit_settles_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta");
        let mut store = MetaStore::open(&path, false).unwrap();
        store.apply(set("secret", m(0o600, 1))).unwrap();
        store.apply(set("d/f", m(0o640, 2))).unwrap();
        store.apply(set("e", m(0o700, 3))).unwrap();
        // rm secret; mv d e (replacing e); chmod of the moved file; then a rollback.
        store
            .apply(staged(MetaRecord::Drop {
                path: "secret".into(),
            }))
            .unwrap();
        store
            .apply(staged(MetaRecord::Move {
                from: "d".into(),
                to: "e".into(),
            }))
            .unwrap();
        assert_eq!(store.get("e/f"), Some(m(0o640, 2)));
        assert_eq!(store.get("e"), None);
        drop(store);
        // The undo entries are rebuilt by replay.
        let mut store = MetaStore::open(&path, false).unwrap();
        assert_eq!(store.undo_len(), 2);
        store.rollback().unwrap();
        assert_eq!(store.get("secret"), Some(m(0o600, 1)));
        assert_eq!(store.get("d/f"), Some(m(0o640, 2)));
        assert_eq!(store.get("e"), Some(m(0o700, 3)));
        assert_eq!(store.get("e/f"), None);
        assert_eq!(store.undo_len(), 0);
        // Committed: a later rollback leaves it; one staged after the commit's mark stays.
        store
            .apply(staged(MetaRecord::Drop {
                path: "secret".into(),
            }))
            .unwrap();
        let mark = store.undo_len();
        store
            .apply(staged(MetaRecord::Drop { path: "e".into() }))
            .unwrap();
        store.settle(mark).unwrap();
        assert_eq!(store.undo_len(), 1);
        let log = store.log.as_mut().unwrap();
        log.compact(&store.map, &store.undo).unwrap();
        drop(store);
        let mut store = MetaStore::open(&path, false).unwrap();
        assert_eq!(store.undo_len(), 1, "compaction lost an undo entry");
        store.rollback().unwrap();
        assert_eq!(store.get("secret"), None);
        assert_eq!(store.get("e"), Some(m(0o700, 3)));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set(usize, Option<u32>),
        Drop(usize),
        Move(usize, usize),
        Reopen,
    }

    const PATHS: [&str; 7] = ["", "a", "a/b", "a/b/c", "ab", "b", "b/a"];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..PATHS.len(), proptest::option::of(0u32..0o7777)).prop_map(|(p, m)| Op::Set(p, m)),
            (0..PATHS.len()).prop_map(Op::Drop),
            (0..PATHS.len(), 0..PATHS.len()).prop_map(|(a, b)| Op::Move(a, b)),
            Just(Op::Reopen),
        ]
    }

    /// The map against a model (every path's entry computed directly from the tree algebra),
    /// through the log and reopens.
    fn model_apply(model: &mut BTreeMap<String, Meta>, op: &MetaRecord) {
        let under = |p: &str, root: &str| {
            root.is_empty() || p == root || p.starts_with(&format!("{root}/"))
        };
        match op {
            MetaRecord::Set { path, meta } => match meta {
                Some(m) => {
                    model.insert(path.clone(), *m);
                }
                None => {
                    model.remove(path);
                }
            },
            MetaRecord::Drop { path } => model.retain(|p, _| !under(p, path)),
            MetaRecord::Move { from, to } if from != to => {
                let moved: BTreeMap<String, Meta> = model
                    .iter()
                    .filter(|(p, _)| under(p, from))
                    .map(|(p, m)| (format!("{to}{}", &p[from.len()..]), *m))
                    .collect();
                model.retain(|p, _| !under(p, from) && !under(p, to));
                model.extend(moved);
            }
            _ => {}
        }
    }

    proptest! {
        #[test]
        fn the_map_and_its_log_agree_with_a_model(ops in proptest::collection::vec(op(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("meta");
            let mut store = MetaStore::open(&path, false).unwrap();
            let mut model = BTreeMap::new();
            for op in ops {
                let record = match op {
                    Op::Set(p, mode) => MetaRecord::Set {
                        path: PATHS[p].into(),
                        meta: mode.map(|mode| m(mode, 1)),
                    },
                    Op::Drop(p) => MetaRecord::Drop { path: PATHS[p].into() },
                    // rename(2) never moves a node below itself.
                    Op::Move(a, b) if PATHS[b].starts_with(&format!("{}/", PATHS[a])) || PATHS[a].is_empty() || PATHS[b].is_empty() => continue,
                    Op::Move(a, b) => MetaRecord::Move { from: PATHS[a].into(), to: PATHS[b].into() },
                    Op::Reopen => {
                        drop(store);
                        store = MetaStore::open(&path, false).unwrap();
                        continue;
                    }
                };
                model_apply(&mut model, &record);
                store.apply(record).unwrap();
                let got: BTreeMap<String, Meta> =
                    store.map.iter().map(|(p, m)| (p.clone(), *m)).collect();
                prop_assert_eq!(&got, &model);
            }
            drop(store);
            let (reread, _) = MetaLog::read(&path).unwrap();
            let got: BTreeMap<String, Meta> = reread.iter().map(|(p, m)| (p.clone(), *m)).collect();
            prop_assert_eq!(got, model);
        }
    }
}
