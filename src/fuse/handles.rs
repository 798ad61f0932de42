//! Open files: the bytes of one open inode, shared by every descriptor and process that has
//! it open, as a disk filesystem's page cache and inode are.
//!
//! Writes from any descriptor land at their offset in the one buffer, reads from any
//! descriptor see all of them (two `>>` loops, SQLite in two processes, a second descriptor
//! overwriting a byte), and the kernel's own locking of the inode makes O_APPEND atomic. The
//! db gets the value as one `set` when a writer flushes (closes) the file, so no reader of the
//! store ever sees half a value. Until the first write the [`OpenFile`] holds:
//! - nothing but the blob id it opened (reads load that exact blob once, so an open file
//!   keeps reading the value it opened even if HEAD moves under it: the path then gets a new
//!   inode): in memory when small, as its plain file from [`ValueFiles`] beyond
//!   [`SPILL_THRESHOLD`], or
//! - an owned buffer after the first write or truncate: in memory while small, spilled to a
//!   temp file beyond [`SPILL_THRESHOLD`], so a 256 MiB `cp` holds no copy in memory (the
//!   flush streams the file into the object store). Once flushed and no longer open for
//!   writing, a spill file becomes the value's plain file (a rename, see
//!   [`OpenFile::settle`]).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::SystemTime;

use tempfile::NamedTempFile;

use super::errno::ToErrno;
use super::valuefiles::ValueFiles;
use crate::db::{Bytes, GitDb, ObjectId, ValueMode};

/// Buffers larger than this go to a temp file.
pub const SPILL_THRESHOLD: u64 = 8 << 20;

/// Where an opened value's contents come from: the db, which knows values still waiting for
/// their commit. A trait rather than the db itself so that the buffer's logic reads only what
/// it needs from it.
pub trait BlobSource {
    fn blob_for_handle(&self, id: ObjectId) -> Result<Bytes, HandleError>;
    /// The size of blob `id` without reading it (None: unknown).
    fn blob_size_for_handle(&self, id: ObjectId) -> Option<u64>;
    /// Writes blob `id` to `out` without holding it whole (for values too large to hold).
    fn copy_for_handle(&self, id: ObjectId, out: &mut File) -> Result<u64, HandleError>;
}

impl BlobSource for GitDb {
    fn blob_for_handle(&self, id: ObjectId) -> Result<Bytes, HandleError> {
        Ok(self.value(id)?)
    }

    fn blob_size_for_handle(&self, id: ObjectId) -> Option<u64> {
        // Plain copies are kept only for values large enough to be blobs in the store.
        self.value_size(id).ok()
    }

    fn copy_for_handle(&self, id: ObjectId, out: &mut File) -> Result<u64, HandleError> {
        Ok(self.copy_value(id, out)?)
    }
}

/// Errors of an open-file buffer.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("temp file for an open value: {0}")]
    Io(#[from] std::io::Error),
    #[error("reading the opened value: {0}")]
    Db(#[from] crate::db::DbError),
}

impl HandleError {
    pub fn errno(&self) -> i32 {
        match self {
            HandleError::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
            HandleError::Db(e) => e.errno(),
        }
    }
}

fn not_owned() -> HandleError {
    HandleError::Io(std::io::Error::other(
        "open-file buffer was not made writable",
    ))
}

enum Content {
    /// Not loaded yet: the blob the handle opened (None: an empty value).
    Source(Option<ObjectId>),
    /// The opened blob, shared with the store's cache.
    Shared(Bytes),
    /// Owned and in memory.
    Mem(Vec<u8>),
    /// Owned and spilled to a temp file of `len` bytes.
    Spilled { file: NamedTempFile, len: u64 },
    /// The opened (or just stored) blob as a plain file of `len` bytes: read-only.
    Plain { file: File, len: u64 },
}

/// What a flush hands to the db.
pub enum FlushData<'a> {
    Mem(&'a [u8]),
    /// A reader over the whole spilled value.
    Stream(std::io::Take<&'a mut File>),
}

/// One open inode's value.
pub struct OpenFile {
    /// The inode (its path may change by rename).
    pub ino: u64,
    /// Mode the value gets when flushed.
    pub mode: ValueMode,
    /// Whether the buffer differs from what the db holds.
    pub dirty: bool,
    /// What the last flush stored, when small enough to put in the page cache at release,
    /// with the change counters taken before its bytes were read.
    pub(crate) flushed: Option<(super::ChangeToken, Vec<u8>)>,
    /// When the buffer was last written or truncated: the file's mtime and ctime, kept when
    /// the value is flushed later (a close is no modification).
    pub modified: Option<SystemTime>,
    /// The blob the db holds for exactly the bytes of this buffer (set by a flush, cleared
    /// by the next write or truncate).
    stored_as: Option<ObjectId>,
    content: Content,
    files: Arc<ValueFiles>,
}

impl OpenFile {
    /// An open file on the blob `id` (None: empty), loaded at the first read.
    pub fn new(
        ino: u64,
        id: Option<ObjectId>,
        mode: ValueMode,
        files: Arc<ValueFiles>,
    ) -> OpenFile {
        OpenFile {
            ino,
            mode,
            dirty: false,
            flushed: None,
            modified: None,
            stored_as: None,
            content: Content::Source(id),
            files,
        }
    }

    /// An open file on bytes already at hand (a value that may no longer be readable by id,
    /// such as an uncommitted one a rename replaced).
    pub fn with_bytes(ino: u64, bytes: Bytes, mode: ValueMode, files: Arc<ValueFiles>) -> OpenFile {
        OpenFile {
            content: Content::Shared(bytes),
            ..OpenFile::new(ino, None, mode, files)
        }
    }

    fn load(&mut self, store: &impl BlobSource) -> Result<(), HandleError> {
        if let Content::Source(id) = self.content {
            self.content = match id {
                Some(id) => match self.files.get(id, || store.blob_size_for_handle(id)) {
                    Some((file, len)) => Content::Plain { file, len },
                    None => {
                        if let Some(plain) = self.copy_out(store, id) {
                            self.content = plain;
                            return Ok(());
                        }
                        let bytes = store.blob_for_handle(id)?;
                        if bytes.len() as u64 > SPILL_THRESHOLD {
                            // Written out once, so this and later handles read it without
                            // holding it in memory or inflating it again.
                            match self.files.store(id, &bytes) {
                                Ok((file, len)) => Content::Plain { file, len },
                                Err(e) => {
                                    log::warn!("keeping a plain copy of blob {id}: {e}");
                                    Content::Shared(bytes)
                                }
                            }
                        } else {
                            Content::Shared(bytes)
                        }
                    }
                },
                None => Content::Mem(Vec::new()),
            };
        }
        Ok(())
    }

    /// A plain copy of blob `id` written straight from the object database, for a value
    /// too large to hold in memory even once (None: a small value, or the copy failed and
    /// the caller reads the value whole instead).
    fn copy_out(&self, store: &impl BlobSource, id: ObjectId) -> Option<Content> {
        let size = store.blob_size_for_handle(id)?;
        if size <= SPILL_THRESHOLD || size > self.files.budget() {
            return None;
        }
        match self.files.fill(id, |file| store.copy_for_handle(id, file)) {
            Ok((file, len)) => Some(Content::Plain { file, len }),
            Err(e) => {
                log::warn!("writing a plain copy of blob {id}: {e}");
                None
            }
        }
    }

    /// Current length (loads the value if needed).
    pub fn len(&mut self, store: &impl BlobSource) -> Result<u64, HandleError> {
        self.load(store)?;
        Ok(match &self.content {
            Content::Source(_) => 0,
            Content::Shared(b) => b.len() as u64,
            Content::Mem(v) => v.len() as u64,
            Content::Spilled { len, .. } | Content::Plain { len, .. } => *len,
        })
    }

    /// Up to `size` bytes at `offset`.
    pub fn read(
        &mut self,
        store: &impl BlobSource,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, HandleError> {
        self.read_with(store, offset, size, <[u8]>::to_vec)
    }

    /// Hands up to `size` bytes at `offset` to `f` without copying them out first: a value
    /// in memory is lent as it is, a file-backed one read into a buffer the thread reuses
    /// (a 256 MiB `cat` is two thousand 128 KiB reads).
    pub fn read_with<R>(
        &mut self,
        store: &impl BlobSource,
        offset: u64,
        size: u32,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, HandleError> {
        self.load(store)?;
        let slice = |b: &[u8]| {
            let start = (offset as usize).min(b.len());
            let end = start.saturating_add(size as usize).min(b.len());
            (start, end)
        };
        match &self.content {
            Content::Source(_) => Ok(f(&[])),
            Content::Shared(b) => {
                let (start, end) = slice(b);
                Ok(f(&b[start..end]))
            }
            Content::Mem(v) => {
                let (start, end) = slice(v);
                Ok(f(&v[start..end]))
            }
            Content::Spilled { file, len } => read_at(file.as_file(), *len, offset, size, f),
            Content::Plain { file, len } => read_at(file, *len, offset, size, f),
        }
    }

    /// Makes the content owned (copy on first write), spilling if it is large.
    fn own(&mut self, store: &impl BlobSource, needed: u64) -> Result<(), HandleError> {
        self.load(store)?;
        if let Content::Plain { file, len } = &mut self.content {
            let len = *len;
            let mut spill = self.files.spill_file()?;
            file.seek(SeekFrom::Start(0))?;
            std::io::copy(&mut file.take(len), spill.as_file_mut())?;
            self.content = Content::Spilled { file: spill, len };
        }
        if let Content::Shared(b) = &self.content {
            let b = b.clone();
            if (b.len() as u64).max(needed) > SPILL_THRESHOLD {
                let file = self.files.spill_file()?;
                file.as_file().write_all_at(&b, 0)?;
                self.content = Content::Spilled {
                    file,
                    len: b.len() as u64,
                };
            } else {
                self.content = Content::Mem(b.to_vec());
            }
        }
        if let Content::Mem(v) = &mut self.content
            && needed > SPILL_THRESHOLD
        {
            let file = self.files.spill_file()?;
            file.as_file().write_all_at(v, 0)?;
            let len = v.len() as u64;
            self.content = Content::Spilled { file, len };
        }
        Ok(())
    }

    /// Writes `data` at `offset`, zero-filling any gap (sparse extension).
    pub fn write(
        &mut self,
        store: &impl BlobSource,
        offset: u64,
        data: &[u8],
    ) -> Result<(), HandleError> {
        let end = offset.saturating_add(data.len() as u64);
        self.own(store, end)?;
        match &mut self.content {
            Content::Mem(v) => {
                let (o, e) = (offset as usize, end as usize);
                if v.len() < e {
                    v.resize(e, 0);
                }
                v[o..e].copy_from_slice(data);
            }
            Content::Spilled { file, len } => {
                file.as_file().write_all_at(data, offset)?;
                *len = (*len).max(end);
            }
            Content::Source(_) | Content::Shared(_) | Content::Plain { .. } => {
                return Err(not_owned());
            }
        }
        self.dirty = true;
        self.stored_as = None;
        self.modified = Some(SystemTime::now());
        Ok(())
    }

    /// Sets the length to `size` (shrinks or zero-extends).
    pub fn truncate(&mut self, store: &impl BlobSource, size: u64) -> Result<(), HandleError> {
        if size == 0 {
            // Do not load a large value only to drop it.
            self.content = Content::Mem(Vec::new());
        } else {
            self.own(store, size)?;
        }
        match &mut self.content {
            Content::Mem(v) => v.resize(size as usize, 0),
            Content::Spilled { file, len } => {
                file.as_file().set_len(size)?;
                *len = size;
            }
            Content::Source(_) | Content::Shared(_) | Content::Plain { .. } => {
                return Err(not_owned());
            }
        }
        self.dirty = true;
        self.stored_as = None;
        self.modified = Some(SystemTime::now());
        Ok(())
    }

    /// The whole value, for the db.
    pub fn flush_data(&mut self, store: &impl BlobSource) -> Result<FlushData<'_>, HandleError> {
        self.load(store)?;
        Ok(match &mut self.content {
            Content::Source(_) => FlushData::Mem(&[]),
            Content::Shared(b) => FlushData::Mem(b),
            Content::Mem(v) => FlushData::Mem(v),
            Content::Spilled { file, len } => {
                let file = file.as_file_mut();
                file.seek(SeekFrom::Start(0))?;
                FlushData::Stream(file.take(*len))
            }
            Content::Plain { file, len } => {
                file.seek(SeekFrom::Start(0))?;
                FlushData::Stream(file.take(*len))
            }
        })
    }

    /// The db now holds these bytes as blob `id`.
    pub fn stored(&mut self, id: ObjectId) {
        self.stored_as = Some(id);
    }

    /// Called once no descriptor has the file open for writing: a spill file whose bytes
    /// the db holds becomes the blob's plain file (renamed, not copied), read-only from then
    /// on. Before that (an fsync while writing) it stays a spill, or the next write would
    /// copy the whole file back. Refused by the value cache (over its budget), the spill
    /// stays too, so reads never load the value into memory.
    pub fn settle(&mut self) {
        let Some(id) = self.stored_as else {
            return;
        };
        if self.dirty || !matches!(self.content, Content::Spilled { .. }) {
            return;
        }
        let content = std::mem::replace(&mut self.content, Content::Source(Some(id)));
        let Content::Spilled { file, len } = content else {
            self.content = content;
            return;
        };
        self.content = match self.files.adopt(id, file) {
            Ok((file, len)) => Content::Plain { file, len },
            Err((e, file)) => {
                log::debug!("no plain copy of blob {id}: {e}");
                Content::Spilled { file, len }
            }
        };
    }
}

fn read_at<R>(
    file: &File,
    len: u64,
    offset: u64,
    size: u32,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, HandleError> {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let end = offset.saturating_add(size as u64).min(len);
    if offset >= end {
        return Ok(f(&[]));
    }
    let n = (end - offset) as usize;
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        if buf.len() < n {
            buf.resize(n, 0);
        }
        file.read_exact_at(&mut buf[..n], offset)?;
        Ok(f(&buf[..n]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &tempfile::TempDir) -> Arc<ValueFiles> {
        Arc::new(ValueFiles::open(&dir.path().join("gitdb"), 1 << 30, true).expect("value files"))
    }

    fn store() -> (tempfile::TempDir, GitDb) {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = crate::db::NodeId::new("n1").expect("node");
        let db = GitDb::open(dir.path().join("r.git"), node, Default::default()).expect("db");
        (dir, db)
    }

    /// Stores `value` under `key` and returns its blob, as a flush does.
    fn blob(db: &GitDb, key: &str, value: &[u8]) -> ObjectId {
        db.set_stream(key, value.len() as u64, value, ValueMode::Regular)
            .expect("blob")
    }

    #[test]
    fn write_read_sparse_truncate() {
        let (dir, store) = store();
        let id = blob(&store, "/hello", b"hello");
        let mut h = OpenFile::new(2, Some(id), ValueMode::Regular, files(&dir));
        assert_eq!(h.read(&store, 1, 3).expect("read"), b"ell");
        h.write(&store, 8, b"x").expect("write");
        assert_eq!(h.read(&store, 0, 100).expect("read"), b"hello\0\0\0x");
        h.truncate(&store, 2).expect("truncate");
        assert_eq!(h.len(&store).expect("len"), 2);
        assert!(h.dirty);
    }

    #[test]
    fn large_values_spill_to_a_file() {
        let (dir, store) = store();
        let mut h = OpenFile::new(2, None, ValueMode::Regular, files(&dir));
        let chunk = vec![7u8; 1 << 20];
        for i in 0..10u64 {
            h.write(&store, i << 20, &chunk).expect("write");
        }
        assert!(matches!(h.content, Content::Spilled { .. }));
        assert_eq!(h.len(&store).expect("len"), 10 << 20);
        assert_eq!(
            h.read(&store, (10 << 20) - 2, 10).expect("read"),
            vec![7, 7]
        );
        let FlushData::Stream(mut r) = h.flush_data(&store).expect("flush") else {
            panic!("expected a stream");
        };
        let mut all = Vec::new();
        r.read_to_end(&mut all).expect("read");
        assert_eq!(all.len(), 10 << 20);
    }

    /// A spill becomes the plain copy only once no writer is left (`settle`): an fsync in the
    /// middle of writing keeps it, so the next write does not copy the file back. A cache
    /// that refuses it leaves the spill in place.
    #[test]
    fn a_spill_becomes_the_plain_copy_at_close_only() {
        let (dir, store) = store();
        let values = dir.path().join("gitdb").join("values");
        let chunk = vec![7u8; 9 << 20];
        let id = blob(&store, "/big", &chunk);
        let mut h = OpenFile::new(2, None, ValueMode::Regular, files(&dir));
        h.write(&store, 0, &chunk).expect("write");
        h.dirty = false; // as a flush leaves it
        h.stored(id);
        assert!(
            matches!(h.content, Content::Spilled { .. }),
            "fsync'ed, still open"
        );
        assert!(!values.join(id.to_string()).exists());
        h.settle();
        assert!(matches!(h.content, Content::Plain { .. }), "closed");
        assert!(values.join(id.to_string()).exists());

        let tiny = Arc::new(
            ValueFiles::open(&dir.path().join("tiny"), 1 << 20, true).expect("value files"),
        );
        let mut h = OpenFile::new(3, None, ValueMode::Regular, tiny);
        h.write(&store, 0, &chunk).expect("write");
        h.dirty = false;
        h.stored(id);
        h.settle();
        assert!(
            matches!(h.content, Content::Spilled { .. }),
            "refused by the budget"
        );
        assert_eq!(h.read(&store, (9 << 20) - 1, 10).expect("read"), vec![7]);
    }
}
