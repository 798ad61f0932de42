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

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
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

/// What changed in a followed journal since the last look.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    /// The same file grew: these records follow the ones seen before.
    Appended(Vec<Record>),
    /// The file was replaced, reset or shrank (or appeared, or vanished): these records are
    /// all of it, to apply to an empty working layer.
    Replaced(Vec<Record>),
}

/// Follows a journal that another process writes (see the module docs).
pub struct Follower {
    path: PathBuf,
    /// (device, inode) of the file read.
    identity: Option<(u64, u64)>,
    /// The generation number its first record gave (`None` for a file without one).
    generation: Option<u64>,
    /// Length of the good records read.
    consumed: u64,
    /// Offset, length and checksum of the last good record read: a cut-back and different
    /// records in its place show here.
    last: Option<(u64, [u8; 8])>,
}

impl Follower {
    pub fn new(path: &Path) -> Follower {
        Follower {
            path: path.to_owned(),
            identity: None,
            generation: None,
            consumed: 0,
            last: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Looks at the file again. A torn tail (the writer is mid-append) is not consumed: the
    /// next look reads it again, whole by then.
    pub fn poll(&mut self) -> Result<Change> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.identity.is_none() && self.consumed == 0 {
                    return Ok(Change::Unchanged);
                }
                *self = Follower::new(&self.path);
                return Ok(Change::Replaced(Vec::new()));
            }
            Err(e) => return Err(e.into()),
        };
        let meta = file.metadata()?;
        let identity = Some((meta.dev(), meta.ino()));
        let size = meta.len();
        let same = identity == self.identity
            && self.consumed >= MAGIC.len() as u64
            && size >= self.consumed
            && first_generation(&file)? == self.generation
            && match self.last {
                None => true,
                Some((at, header)) => {
                    let mut now = [0u8; 8];
                    file.read_exact_at(&mut now, at).is_ok() && now == header
                }
            };
        if same {
            if size == self.consumed {
                return Ok(Change::Unchanged);
            }
            let mut tail = Vec::with_capacity((size - self.consumed) as usize);
            file.seek(SeekFrom::Start(self.consumed))?;
            file.read_to_end(&mut tail)?;
            let (records, good, last) = decode_records(&tail, 0);
            if let Some(last) = last {
                self.last = Some((self.consumed + last as u64, header_at(&tail, last)));
            }
            self.consumed += good as u64;
            return Ok(if records.is_empty() {
                Change::Unchanged
            } else {
                Change::Appended(records)
            });
        }
        let mut data = Vec::with_capacity(size as usize);
        file.read_to_end(&mut data)?;
        let (records, good) = decode(&data);
        self.identity = identity;
        self.consumed = good as u64;
        self.generation = match records.first() {
            Some(Record::Generation(g)) => Some(*g),
            _ => None,
        };
        self.last = last_record_offset(&data, good).map(|at| (at as u64, header_at(&data, at)));
        Ok(Change::Replaced(records))
    }
}

/// The generation number in the first record of `file`, if it has one.
fn first_generation(file: &File) -> Result<Option<u64>> {
    let mut header = [0u8; 8];
    if file.read_exact_at(&mut header, MAGIC.len() as u64).is_err() {
        return Ok(None);
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    // A generation record is a dozen bytes; anything longer is another record.
    if len > 16 {
        return Ok(None);
    }
    let mut payload = vec![0u8; len as usize];
    if file
        .read_exact_at(&mut payload, MAGIC.len() as u64 + 8)
        .is_err()
    {
        return Ok(None);
    }
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if crc32fast::hash(&payload) != crc {
        return Ok(None);
    }
    Ok(match postcard::from_bytes::<Record>(&payload) {
        Ok(Record::Generation(g)) => Some(g),
        _ => None,
    })
}

fn header_at(data: &[u8], at: usize) -> [u8; 8] {
    let mut h = [0u8; 8];
    h.copy_from_slice(&data[at..at + 8]);
    h
}

/// Where the last good record of a whole file starts (`good`: the length of its good prefix).
fn last_record_offset(data: &[u8], good: usize) -> Option<usize> {
    if good <= MAGIC.len() {
        return None;
    }
    decode_records(&data[..good], MAGIC.len()).2
}

fn encode(record: &Record) -> std::io::Result<Vec<u8>> {
    encode_frame(record)
}

/// One record framed as `[len][crc32][postcard payload]`: the journal's framing, shared with
/// the node-local metadata log ([`super::meta`]).
pub(crate) fn encode_frame<R: Serialize>(record: &R) -> std::io::Result<Vec<u8>> {
    let payload = postcard::to_stdvec(record).map_err(std::io::Error::other)?;
    let mut buf = Vec::with_capacity(8 + payload.len());
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
    Ok(buf)
}

/// Decodes records from a whole journal file; returns them and the length of the good prefix
/// (what follows it is a torn or corrupt tail). Public for the fuzz target.
pub fn decode(data: &[u8]) -> (Vec<Record>, usize) {
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        return (Vec::new(), 0);
    }
    let (records, good, _) = decode_records(data, MAGIC.len());
    (records, good)
}

/// Decodes the records in `data` from `pos` on: the records, where the good ones end, and
/// where the last good one starts.
fn decode_records(data: &[u8], pos: usize) -> (Vec<Record>, usize, Option<usize>) {
    decode_frames(data, pos)
}

/// Decodes framed records (see [`encode_frame`]) from `pos` on, stopping at the first short,
/// oversized, corrupt or undecodable one: the records, where the good ones end, and where the
/// last good one starts.
pub(crate) fn decode_frames<R: serde::de::DeserializeOwned>(
    data: &[u8],
    mut pos: usize,
) -> (Vec<R>, usize, Option<usize>) {
    let mut records = Vec::new();
    let mut last = None;
    while let Some(header) = data.get(pos..pos + 8) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_RECORD {
            break;
        }
        let Some(payload) = data.get(pos + 8..pos + 8 + len as usize) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Ok(record) = postcard::from_bytes::<R>(payload) else {
            break;
        };
        records.push(record);
        last = Some(pos);
        pos += 8 + len as usize;
    }
    (records, pos, last)
}

/// Writes `bytes` to `tmp`, syncs it and renames it over `path`, returning the file (still
/// open, at its end: the rename keeps the inode, so no reopen can fail afterwards). On
/// failure the temp file is removed and `path` is untouched. The caller syncs the directory.
pub(crate) fn replace_file(tmp: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<File> {
    let written = (|| {
        let mut f = File::create(tmp)?;
        crate::fault::write_all(&mut f, bytes, "journal rewrite")?;
        f.sync_all()?;
        std::fs::rename(tmp, path)?;
        Ok::<_, std::io::Error>(f)
    })();
    if written.is_err()
        && let Err(rm) = std::fs::remove_file(tmp)
        && rm.kind() != std::io::ErrorKind::NotFound
    {
        log::warn!("cannot remove {}: {rm}", tmp.display());
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str) -> Record {
        Record::Set {
            key: key.into(),
            mode: ValueMode::Regular,
            id: [7; 20],
            size: 3,
        }
    }

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let (mut j, recs) = Journal::open(&path).unwrap();
        assert!(recs.is_empty());
        j.append(&Record::base(None)).unwrap();
        j.append(&set("a")).unwrap();
        j.append(&Record::Delete { key: "b".into() }).unwrap();
        j.sync().unwrap();
        drop(j);
        let (_, recs) = Journal::open(&path).unwrap();
        assert_eq!(
            recs,
            vec![
                Record::base(None),
                set("a"),
                Record::Delete { key: "b".into() }
            ]
        );
    }

    #[test]
    fn every_torn_tail_is_dropped_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(&set("a")).unwrap();
        j.append(&set("bb")).unwrap();
        drop(j);
        let full = std::fs::read(&path).unwrap();
        let first_end = MAGIC.len() + encode(&set("a")).unwrap().len();
        for cut in MAGIC.len()..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let (mut j, recs) = Journal::open(&path).unwrap();
            let expect = if cut >= first_end {
                vec![set("a")]
            } else {
                vec![]
            };
            assert_eq!(recs, expect, "cut at {cut}");
            // Appending after a cut must produce a readable file again.
            j.append(&set("c")).unwrap();
            drop(j);
            let mut expect = expect;
            expect.push(set("c"));
            assert_eq!(
                Journal::read(&path).unwrap(),
                expect,
                "append after cut at {cut}"
            );
        }
    }

    #[test]
    fn a_flipped_bit_stops_replay_at_that_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(&set("a")).unwrap();
        j.append(&set("b")).unwrap();
        drop(j);
        let mut data = std::fs::read(&path).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0x40;
        std::fs::write(&path, &data).unwrap();
        assert_eq!(Journal::read(&path).unwrap(), vec![set("a")]);
    }

    fn big(key: &str, n: usize) -> Record {
        Record::SetInline {
            key: key.into(),
            mode: ValueMode::Regular,
            data: vec![0xa5; n],
        }
    }

    /// A full disk: the append that fails leaves nothing behind, so what is appended once space
    /// is back survives a reopen (before the fix the torn record stayed and hid them).
    #[test]
    fn a_failed_append_on_a_full_disk_is_cut_back() {
        let Some(fs) = crate::db::testfs::Tmpfs::mount(1 << 20) else {
            return;
        };
        let path = fs.path().join("journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(&set("before")).unwrap();
        let filler = fs.fill();
        // The journal's last page may still have room: append until it has none. Records of
        // 3,000 bytes overflow a page part way, so the failing write is a partial one.
        let mut kept = vec![set("before")];
        let mut failed = false;
        for i in 0..64 {
            let r = big(&format!("fill{i}"), 3000);
            match j.append(&r) {
                Ok(()) => kept.push(r),
                Err(JournalError::Io(e)) if e.kind() == std::io::ErrorKind::StorageFull => {
                    failed = true;
                    break;
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert!(failed, "the disk never filled up");
        assert!(!j.is_poisoned());
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            j.len,
            "the failed append left bytes behind"
        );
        std::fs::remove_file(filler).unwrap();
        for key in ["after1", "after2"] {
            j.append(&set(key)).unwrap();
            kept.push(set(key));
        }
        j.sync().unwrap();
        drop(j);
        let replayed = Journal::open(&path).unwrap().1;
        assert!(
            replayed == kept,
            "replayed {:?}, appended {:?}",
            keys(&replayed),
            keys(&kept)
        );
    }

    /// The keys of `records`, for failure messages that do not print whole values.
    fn keys(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| match r {
                Record::Set { key, .. } | Record::SetInline { key, .. } => key.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// When even the cut fails, appends are refused (rather than written behind a torn
    /// record) until a reset or rewrite starts a good file again.
    #[test]
    fn a_journal_that_cannot_cut_back_refuses_appends_until_reset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(&set("a")).unwrap();
        let writable = std::mem::replace(&mut j.file, File::open(&path).unwrap());
        // A read-only descriptor fails both the write and the cut.
        assert!(matches!(j.append(&set("b")), Err(JournalError::Io(_))));
        assert!(j.is_poisoned());
        j.file = writable;
        assert!(matches!(
            j.append(&set("c")),
            Err(JournalError::Poisoned { .. })
        ));
        j.reset(Record::base(None)).unwrap();
        j.append(&set("d")).unwrap();
        drop(j);
        let recs = Journal::read(&path).unwrap();
        assert!(matches!(recs[0], Record::Generation(_)), "{recs:?}");
        assert_eq!(recs[1..], [Record::base(None), set("d")]);
    }

    /// A reset needs no free space: on a full disk it empties the journal and starts a new
    /// generation (a rewrite through a temp file cannot).
    #[test]
    fn a_reset_on_a_full_disk_empties_the_journal() {
        let Some(fs) = crate::db::testfs::Tmpfs::mount(1 << 20) else {
            return;
        };
        let path = fs.path().join("journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(&big("x", 6000)).unwrap();
        j.sync().unwrap();
        let _filler = fs.fill();
        assert!(j.rewrite(&[Record::base(None)]).is_err());
        j.reset(Record::base(None)).unwrap();
        let recs = Journal::read(&path).unwrap();
        assert!(matches!(recs[0], Record::Generation(_)), "{recs:?}");
        assert_eq!(recs[1..], [Record::base(None)]);
    }

    /// A base record that does not fit is owed: it goes out in front of the next record, once
    /// there is room.
    #[test]
    fn a_base_that_does_not_fit_goes_in_front_of_the_next_record() {
        let Some(fs) = crate::db::testfs::Tmpfs::mount(1 << 20) else {
            return;
        };
        let path = fs.path().join("journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        // A journal of exactly one page: no slack left in its last page.
        let n = (0..4096)
            .find(|&n| MAGIC.len() + encode(&big("x", n)).unwrap().len() == 4096)
            .unwrap();
        j.append(&big("x", n)).unwrap();
        let filler = fs.fill();
        let base = Record::base(Some(ObjectId::empty_tree(gix::hash::Kind::Sha1)));
        assert!(!j.append_base(base.clone()), "the base fitted after all");
        assert_eq!(Journal::read(&path).unwrap(), vec![big("x", n)]);
        std::fs::remove_file(filler).unwrap();
        j.append(&set("z")).unwrap();
        drop(j);
        assert_eq!(
            Journal::read(&path).unwrap(),
            vec![big("x", n), base, set("z")]
        );
    }

    /// A rewrite that fails (the disk is full) leaves the old journal as it was and no temp
    /// file; a stale temp file from a rewrite that died is removed at open.
    #[test]
    fn a_failed_rewrite_leaves_the_journal_and_no_temp_file() {
        let Some(fs) = crate::db::testfs::Tmpfs::mount(1 << 20) else {
            return;
        };
        let path = fs.path().join("journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(&set("a")).unwrap();
        let filler = fs.fill();
        let many: Vec<Record> = (0..8).map(|i| big(&format!("k{i}"), 5000)).collect();
        assert!(j.rewrite(&many).is_err());
        assert!(!tmp_path(&path).exists(), "journal.tmp left behind");
        std::fs::remove_file(filler).unwrap();
        j.append(&set("b")).unwrap();
        drop(j);
        assert_eq!(Journal::read(&path).unwrap(), vec![set("a"), set("b")]);
        std::fs::write(tmp_path(&path), b"half a rewrite").unwrap();
        let (_, recs) = Journal::open(&path).unwrap();
        assert_eq!(recs, vec![set("a"), set("b")]);
        assert!(!tmp_path(&path).exists());
    }

    /// A follower reads what was appended, notices a rewrite (a new file), a reset in place
    /// even once the file has grown past where it had read, and skips a torn tail until it is
    /// whole.
    #[test]
    fn a_follower_sees_appends_resets_and_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut f = Follower::new(&path);
        assert_eq!(f.poll().unwrap(), Change::Unchanged);
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(&Record::base(None)).unwrap();
        j.append(&set("a")).unwrap();
        assert_eq!(
            f.poll().unwrap(),
            Change::Replaced(vec![Record::base(None), set("a")])
        );
        assert_eq!(f.poll().unwrap(), Change::Unchanged);
        j.append(&set("b")).unwrap();
        assert_eq!(f.poll().unwrap(), Change::Appended(vec![set("b")]));
        // A torn tail: half a record is not read, the whole one is.
        let whole = encode(&set("c")).unwrap();
        let mut raw = OpenOptions::new().append(true).open(&path).unwrap();
        raw.write_all(&whole[..5]).unwrap();
        assert_eq!(f.poll().unwrap(), Change::Unchanged);
        raw.write_all(&whole[5..]).unwrap();
        assert_eq!(f.poll().unwrap(), Change::Appended(vec![set("c")]));
        drop(raw);
        let (mut j, _) = Journal::open(&path).unwrap();
        // A reset that grows back past the old length, with records of the same sizes.
        j.reset(Record::base(None)).unwrap();
        for k in ["x", "y", "z", "w"] {
            j.append(&set(k)).unwrap();
        }
        let Change::Replaced(recs) = f.poll().unwrap() else {
            panic!("a reset was not noticed");
        };
        assert_eq!(
            recs[1..],
            [Record::base(None), set("x"), set("y"), set("z"), set("w")]
        );
        j.rewrite(&[Record::base(None), set("q")]).unwrap();
        let Change::Replaced(recs) = f.poll().unwrap() else {
            panic!("a rewrite was not noticed");
        };
        assert_eq!(recs[1..], [Record::base(None), set("q")]);
        j.append(&set("r")).unwrap();
        assert_eq!(f.poll().unwrap(), Change::Appended(vec![set("r")]));
    }

    #[test]
    fn rewrite_replaces_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(&set("a")).unwrap();
        j.rewrite([&Record::base(None)]).unwrap();
        j.append(&set("z")).unwrap();
        drop(j);
        let recs = Journal::read(&path).unwrap();
        assert!(matches!(recs[0], Record::Generation(_)), "{recs:?}");
        assert_eq!(recs[1..], [Record::base(None), set("z")]);
    }
}
