//! Following a journal that another process writes: what was appended while the file stayed
//! the same, or all of it again once it was replaced or reset.
//!
//! Apart from the writer because a follower holds no lock and owns nothing: it must tell a
//! file that only grew from one that was reset and grew again (by inode, the generation in
//! its first record, and the header of the last record it read).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::frame::{decode, decode_records, header_at, last_record_offset};
use super::{MAGIC, Record, Result};

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
