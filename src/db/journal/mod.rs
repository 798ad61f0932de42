//! The journal: the working layer on disk, so that nothing `sync()` returned for is lost.
//!
//! An append-only file next to the repository (`<git-dir>/gitdb/journal`). A small value (up to
//! 64 KiB) travels inside its record and becomes a blob at commit, where all of them are written
//! as one pack; a larger value is written as a git blob when it is set and the record holds only
//! its id, so a 256 MiB value is never copied into the journal.
//!
//! Layout: the magic line `GITDBJ1\n`, then records, each `[len: u32 LE][crc32: u32 LE][payload]`
//! with a postcard-encoded [`Record`] as payload. Replay stops at the first record that is short,
//! oversized or fails its checksum: a torn tail (the process died mid-write) is dropped whole,
//! never half-applied, and the file is cut back to the last good record before new appends.
//!
//! A full disk never tears the file: an append that fails is cut back to the previous length at
//! once, so the records appended after it (once space is back) follow a good record. If even
//! the cut fails the journal is *poisoned* and refuses appends until it is rewritten or reset.
//!
//! Emptying the journal (a rollback, a commit that leaves nothing uncommitted) is a reset in
//! place that needs no free space: cut to the magic line, fdatasync, then a [`Record::Generation`]
//! and a [`Record::Base`]. A journal of the magic line alone is an empty working layer, so a
//! crash anywhere in that sequence replays correctly; if the two records do not fit they are
//! *owed* and go out in front of the next record. Otherwise (a commit that leaves changes) the
//! journal is rewritten: temp file, fsync, rename, fsync of the directory.
//!
//! Readers without the writer lock follow the file with a [`Follower`]: it reads only what was
//! appended while the file stays the same, and all of it again when the file was replaced or
//! reset. Each rewrite and reset starts with a fresh generation number, which is how a reader
//! tells a file that was reset and grew again from one that only grew.

mod follower;
mod frame;
#[cfg(test)]
mod tests;

pub use follower::{Change, Follower};
pub use frame::decode;
use frame::encode;
pub(crate) use frame::{decode_frames, encode_frame, replace_file};

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::{ObjectId, ValueMode};

const MAGIC: &[u8; 8] = b"GITDBJ1\n";
/// A length above this is corruption, not a reason to allocate (a batch renaming a directory of
/// a million keys is about 70 MiB).
const MAX_RECORD: u32 = 256 << 20;

/// One journaled event. Applying the records of a file in order rebuilds the working layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// The branch head the following records were made on top of (`None`: an unborn branch).
    Base { head: Option<[u8; 20]> },
    /// A value set: the blob is already in the object database.
    Set {
        key: String,
        mode: ValueMode,
        id: [u8; 20],
        size: u64,
    },
    /// A small value set, carried in the journal itself: its blob is written at commit.
    SetInline {
        key: String,
        mode: ValueMode,
        data: Vec<u8>,
    },
    /// A value or a whole prefix deleted.
    Delete { key: String },
    /// Several records applied together or not at all (a rename).
    Batch(Vec<Record>),
    /// The first record of every rewritten or reset journal: a number that differs from the
    /// previous file's, so a [`Follower`] notices a reset even when the file grew back past
    /// where it had read. Changes nothing in the working layer. (Last in the enum: postcard
    /// numbers variants, and journals written before it existed still decode.)
    Generation(u64),
}

impl Record {
    pub fn base(head: Option<ObjectId>) -> Record {
        Record::Base {
            head: head.map(raw_id),
        }
    }
}

pub fn raw_id(id: ObjectId) -> [u8; 20] {
    let mut out = [0u8; 20];
    out.copy_from_slice(id.as_bytes());
    out
}

pub fn from_raw(raw: &[u8; 20]) -> ObjectId {
    ObjectId::from_bytes_or_panic(raw)
}

/// What can go wrong with the journal file.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// An append failed and the partial record could not be cut off: appending more would put
    /// records behind a torn one, where replay never reaches them.
    #[error(
        "the journal refuses appends: a failed append could not be cut back ({cause}); a commit or rollback rewrites it"
    )]
    Poisoned { cause: String },
}

impl JournalError {
    /// The I/O error underneath, if this is one.
    pub fn io(&self) -> Option<&std::io::Error> {
        match self {
            JournalError::Io(e) => Some(e),
            JournalError::Poisoned { .. } => None,
        }
    }
}

pub type Result<T, E = JournalError> = std::result::Result<T, E>;

/// A number for a new journal generation: only has to differ from the one before it.
fn new_generation() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 40) ^ COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// The open journal file, positioned for appending.
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Length of the good records in the file: where the next append goes, and what a failed
    /// one is cut back to.
    len: u64,
    dirty: bool,
    /// Records that could not be written when they were due (a `Generation` and a `Base`
    /// after a reset on a full disk): written in front of the next record.
    owed: Vec<Record>,
    /// Set when a failed append could not be cut back; cleared by a rewrite or reset.
    poisoned: Option<String>,
}

impl Journal {
    /// Opens (or creates) the journal at `path`, returns it with the records it held. A torn or
    /// corrupt tail is cut off (which needs no free space), and a `journal.tmp` left by a
    /// rewrite that died is removed: the caller holds the writer lock, so nobody else writes it.
    pub fn open(path: &Path) -> Result<(Journal, Vec<Record>)> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = tmp_path(path);
        match std::fs::remove_file(&tmp) {
            Ok(()) => log::info!("journal: removed stale {}", tmp.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("journal: cannot remove stale {}: {e}", tmp.display()),
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let (records, mut good_len) = decode(&data);
        if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(MAGIC)?;
            file.sync_all()?;
            good_len = MAGIC.len();
        } else if good_len < data.len() {
            log::warn!(
                "journal {}: dropping {} bytes of torn or corrupt tail",
                path.display(),
                data.len() - good_len
            );
            file.set_len(good_len as u64)?;
            file.sync_all()?;
        }
        // Opened without O_APPEND so the cut above positions the next write.
        file.seek(SeekFrom::Start(good_len as u64))?;
        Ok((
            Journal {
                path: path.to_owned(),
                file,
                len: good_len as u64,
                dirty: false,
                owed: Vec::new(),
                poisoned: None,
            },
            records,
        ))
    }

    /// Reads the records of a journal without opening it for writing (for read-only users).
    pub fn read(path: &Path) -> Result<Vec<Record>> {
        match std::fs::read(path) {
            Ok(data) => Ok(decode(&data).0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record (after any owed ones) with a single write; durable after
    /// [`Journal::sync`]. A failed write is cut back, so the file ends with a good record
    /// whatever happens, and nothing owed is forgotten.
    pub fn append(&mut self, record: &Record) -> Result<()> {
        if let Some(cause) = &self.poisoned {
            return Err(JournalError::Poisoned {
                cause: cause.clone(),
            });
        }
        let mut buf = Vec::new();
        for owed in &self.owed {
            buf.extend_from_slice(&encode(owed)?);
        }
        buf.extend_from_slice(&encode(record)?);
        if let Err(e) = crate::fault::write_all(&mut self.file, &buf, "journal append") {
            self.cut_back(&e);
            return Err(e.into());
        }
        self.owed.clear();
        self.len += buf.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// Appends `base` now if it fits, else owes it to the next append (a later `Base` replaces
    /// an owed one). Until it is written the file's last `Base` is an older head, which replay
    /// handles: the records are on top of whatever head the ref names then. Returns whether it
    /// was written.
    pub fn append_base(&mut self, base: Record) -> bool {
        match self.append(&base) {
            Ok(()) => true,
            Err(e) => {
                log::warn!(
                    "journal {}: base record owed to the next append: {e}",
                    self.path.display()
                );
                self.owed.retain(|r| !matches!(r, Record::Base { .. }));
                self.owed.push(base);
                false
            }
        }
    }

    /// Whether appends are refused (see [`JournalError::Poisoned`]).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    fn cut_back(&mut self, cause: &std::io::Error) {
        let len = self.len;
        let cut = self
            .file
            .set_len(len)
            .and_then(|()| self.file.seek(SeekFrom::Start(len)).map(drop));
        if let Err(e) = cut {
            log::error!(
                "journal {}: cannot cut a failed append back to {len} bytes: {e}",
                self.path.display()
            );
            self.poisoned = Some(format!("{cause}; cutting back: {e}"));
        }
    }

    /// Forces appended records to disk.
    pub fn sync(&mut self) -> Result<()> {
        if self.dirty {
            crate::fault::check("journal fsync")?;
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Empties the journal in place, needing no free space: cut to the magic line, fdatasync,
    /// then a new generation and `base` (owed if they do not fit). Every state a crash can leave
    /// replays correctly: the old file (the reset did not happen), the magic line alone (an
    /// empty working layer), or the new records.
    pub fn reset(&mut self, base: Record) -> Result<()> {
        let magic = MAGIC.len() as u64;
        crate::fault::check("journal reset")?;
        self.file.set_len(magic)?;
        // From here the file is empty whatever follows: the old records are gone.
        self.len = magic;
        self.owed.clear();
        let settle = self
            .file
            .seek(SeekFrom::Start(magic))
            .map(drop)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = settle {
            self.poisoned = Some(format!("resetting: {e}"));
            return Err(e.into());
        }
        self.poisoned = None;
        self.dirty = false;
        self.owed.push(Record::Generation(new_generation()));
        self.append_base(base);
        Ok(())
    }

    /// Replaces the whole journal with `records` (a new generation first), atomically and
    /// durably. On failure the old file is still the journal and the temp file is gone.
    pub fn rewrite<'a>(&mut self, records: impl IntoIterator<Item = &'a Record>) -> Result<()> {
        let tmp = tmp_path(&self.path);
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&encode(&Record::Generation(new_generation()))?);
        for r in records {
            out.extend_from_slice(&encode(r)?);
        }
        // The temp file's handle becomes the journal's: the rename keeps the inode, so there is
        // no reopen that could fail after the rename and leave appends going to the old file.
        let file = replace_file(&tmp, &self.path, &out)?;
        self.file = file;
        self.len = out.len() as u64;
        self.dirty = false;
        self.owed.clear();
        self.poisoned = None;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    path.with_extension("tmp")
}
