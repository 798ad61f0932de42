//! The journal's framing: records as `[len: u32 LE][crc32: u32 LE][postcard payload]`, the
//! decoding that stops at the first torn or corrupt one, and the atomic replacement of a file.
//!
//! Apart from the journal because the node-local metadata log ([`super::super::meta`]) frames
//! its records the same way, and the fuzz target decodes whole files through here.

use std::fs::File;
use std::path::Path;

use serde::Serialize;

use super::{MAGIC, MAX_RECORD, Record};

pub(super) fn header_at(data: &[u8], at: usize) -> [u8; 8] {
    let mut h = [0u8; 8];
    h.copy_from_slice(&data[at..at + 8]);
    h
}

/// Where the last good record of a whole file starts (`good`: the length of its good prefix).
pub(super) fn last_record_offset(data: &[u8], good: usize) -> Option<usize> {
    if good <= MAGIC.len() {
        return None;
    }
    decode_records(&data[..good], MAGIC.len()).2
}

pub(super) fn encode(record: &Record) -> std::io::Result<Vec<u8>> {
    encode_frame(record)
}

/// One record framed as `[len][crc32][postcard payload]`: the journal's framing, shared with
/// the node-local metadata log ([`crate::db::meta`]).
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
pub(super) fn decode_records(data: &[u8], pos: usize) -> (Vec<Record>, usize, Option<usize>) {
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
