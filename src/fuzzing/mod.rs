//! The bodies of the fuzz targets, as library functions: `fuzz/` (cargo-fuzz, nightly) calls
//! them with libFuzzer's inputs, and tests/fuzz_smoke.rs calls them on stable with a few
//! thousand seeded inputs each, so `cargo test` exercises every target. Each one panics when
//! an invariant breaks and returns quietly otherwise (rejecting the input is not a failure).
//!
//! - [`wire`]: gossip messages, frames after a handshake, the responder's handshake;
//! - [`transfer`]: received objects (the importer: trees, commits, edits, entry names);
//! - [`model`]: the db against a `BTreeMap` model, with injected I/O errors (see
//!   [`crate::fault`]);
//! - here: the journal decoder, key parsing and commit stamps.
//!
//! Hidden from the docs: nothing here is API, only test harness kept beside the code it
//! drives (private checks like the importer's are reachable from here, not from `fuzz/`).

pub mod model;
pub mod transfer;
pub mod wire;

/// Any bytes as a journal file: decoding never panics, never allocates past the record limit,
/// and the good prefix it reports decodes to the same records again.
pub fn journal_decode(data: &[u8]) {
    let (records, good) = crate::db::journal::decode(data);
    assert!(good <= data.len());
    let (again, good_again) = crate::db::journal::decode(&data[..good]);
    assert_eq!(records, again);
    assert_eq!(good, good_again);
}

/// Any string as a key: parsing never panics, and what it accepts is normalized, round-trips
/// through its display form, and has only components POSIX accepts (names git refuses in a
/// tree are valid keys: the store escapes them).
pub fn key_parse(s: &str) {
    if let Ok(k) = crate::Key::parse(s) {
        assert_eq!(crate::Key::parse(&k.to_string()).ok(), Some(k.clone()));
        for c in k.components() {
            assert!(!c.is_empty() && c != "." && c != ".." && c.len() <= 255);
            assert!(!c.contains('\0') && !c.contains('/'));
        }
    }
}

/// Any commit message (a peer's or a user's): reading the gitdb stamp never panics, and a
/// stamp that was read writes back to trailers that read the same.
pub fn commit_stamp(s: &str) {
    use crate::db::CommitStamp;
    let stamp = CommitStamp::from_message(s);
    let again = CommitStamp::from_message(&format!("x\n\n{}", stamp.trailers()));
    assert_eq!(stamp.clock, again.clock);
    assert_eq!(stamp.hlc, again.hlc);
    assert_eq!(stamp.node, again.node);
}

/// Reads fuzz input as a stream of small decisions (exhausted input reads as zeros), so
/// structured targets can be driven by libFuzzer's bytes and by a seeded generator alike.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (if n > 256 {
            self.u16() as usize
        } else {
            self.byte() as usize
        }) % n
    }

    /// Up to `max` bytes of the input.
    pub fn take(&mut self, max: usize) -> &'a [u8] {
        let n = self.below(max + 1).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    pub fn pick<'t, T>(&mut self, from: &'t [T]) -> &'t T {
        &from[self.below(from.len())]
    }
}
