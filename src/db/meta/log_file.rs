//! The metadata log on disk: appends in the journal's framing behind its own magic line,
//! replay into the map and its undo entries, and compaction.
//!
//! Apart from the map because the map is plain data (what `stat` reads), while the log is the
//! file discipline that makes each change survive a `kill -9`: cut back a failed append,
//! refuse appends when that fails, rewrite atomically when dead records pile up.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::super::journal::{decode_frames, encode_frame, replace_file};
use super::{MetaMap, MetaRecord};

const MAGIC: &[u8; 8] = b"GITDBM1\n";

/// The log is rewritten from the map once it holds this many records more than the map has
/// entries (a file chmod-ed all day costs neither disk nor replay time).
pub(super) const COMPACT_SLACK: usize = 4096;

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
pub(super) fn note_undo(undo: &mut Undo, map: &MetaMap, record: &MetaRecord) {
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
pub(super) fn record_path(record: &MetaRecord) -> String {
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
