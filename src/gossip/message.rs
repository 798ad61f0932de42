//! The messages peers exchange, and their encoding: postcard (a compact, documented serde
//! format: varint integers, length-prefixed byte strings, enums as a varint tag) inside the
//! encrypted frames of [`super::connection`]. docs/protocol.md describes each message byte by
//! byte; the enum order here is the wire tag, so never reorder, only append.
//!
//! Decoding is the first line of defence against a hostile peer: [`Message::decode`] refuses
//! trailing bytes and anything postcard cannot read, and [`Message::check`] the sizes that a
//! frame limit alone does not bound (a clock of a million nodes, a peer list of a thousand).

use serde::{Deserialize, Serialize};

use crate::db::{EditBlob, EntryEdit, Item, ObjectId, ValueMode, VectorClock};

/// A 20-byte SHA-1 object id as it travels.
pub type Oid = [u8; 20];

/// Most peer addresses one announce carries (the rest are learned from other announces).
pub const MAX_PEERS_PER_ANNOUNCE: usize = 8;
/// Most nodes a clock may name on the wire.
pub const MAX_CLOCK_NODES: usize = 4096;
/// Most haves a pull may name.
pub const MAX_HAVES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Who I am and what I have; the first message of every exchange, answered by the other
    /// side's own announce. Doubles as heartbeat.
    Announce(Announce),
    /// Send me `want` and what it needs, given I have `have` (and their history).
    Pull { want: Oid, have: Vec<Oid> },
    /// Part of the answer to a pull: items in order (see [`crate::db::Item`]), deflated.
    Items(Packed),
    /// The answer to a pull is complete.
    End { commits: u32 },
    /// The request cannot be served (say the wanted commit is not here); the connection ends.
    Refused { reason: String },
    /// Nothing more from me on this connection.
    Bye,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    pub node: String,
    /// Where this node accepts connections (`host:port`); a `0.0.0.0`/`[::]` host means "the
    /// address you see me connect from".
    pub listen: Option<String>,
    pub head: Option<Oid>,
    pub clock: Vec<(String, u64)>,
    pub hlc_millis: u64,
    pub hlc_counter: u32,
    /// A sample of peers this node knows.
    pub peers: Vec<String>,
    /// In an answer: the sender lacks the head of the announce it answers and will pull it on
    /// this connection once the first side is done.
    pub wants_yours: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireItem {
    Blob(Vec<u8>),
    Tree(Vec<u8>),
    Commit {
        data: Vec<u8>,
        edits: Option<Vec<WireEdit>>,
    },
    /// A piece of a blob too large for one message: pieces follow each other, each naming the
    /// blob's whole size, until that many bytes came (see [`BlobAssembly`]).
    BlobPart {
        size: u64,
        data: Vec<u8>,
    },
}

/// Blobs larger than this travel in pieces of this size.
pub const BLOB_PART: usize = 4 << 20;
/// The largest blob a peer may announce in pieces. What a claim costs the receiver is bounded
/// apart from this: parts go to disk as they come (a buffer of memory, whatever the size), and
/// a claim the disk has no room for, less its reserve, is refused before anything is written
/// (see `store/room.rs`). This bound stays above what a mount can write, so that any value a
/// node holds can reach its peers.
pub const MAX_BLOB: u64 = 16 << 30;

/// Checks [`WireItem::BlobPart`]s against the wire's rules on the receiving side: parts follow
/// each other with nothing between them, each names the same size, none is empty, and together
/// they bring exactly that many bytes. The bytes are not kept here: the caller hands each part
/// to the db's receiver, which writes it to disk at once.
#[derive(Debug, Default)]
pub struct BlobAssembly {
    /// The blob under way: its size, and the bytes its parts brought so far.
    partial: Option<(u64, u64)>,
}

/// Where a part falls in its blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlace {
    /// It starts a blob (the receiver opens one of `size` bytes).
    pub first: bool,
    /// It ends the blob.
    pub last: bool,
}

impl BlobAssembly {
    /// Takes a part of `len` bytes of a blob of `size` bytes.
    pub fn add(&mut self, size: u64, len: usize) -> Result<PartPlace, DecodeError> {
        if size > MAX_BLOB {
            return Err(DecodeError::Bound(format!("a blob of {size} bytes")));
        }
        if len == 0 {
            // The sender never sends one, and endless empty parts would hold a pull open.
            return Err(DecodeError::Bound("an empty blob part".into()));
        }
        let first = self.partial.is_none();
        let (want, got) = self.partial.get_or_insert((size, 0));
        if *want != size {
            return Err(DecodeError::Bound(
                "blob parts disagree on the blob's size".into(),
            ));
        }
        *got += len as u64;
        match (*got).cmp(&size) {
            std::cmp::Ordering::Less => Ok(PartPlace { first, last: false }),
            std::cmp::Ordering::Equal => {
                self.partial = None;
                Ok(PartPlace { first, last: true })
            }
            std::cmp::Ordering::Greater => {
                Err(DecodeError::Bound("blob parts longer than the blob".into()))
            }
        }
    }

    /// Whether a blob is half received (any other item now is a protocol error).
    pub fn is_open(&self) -> bool {
        self.partial.is_some()
    }
}

/// `item` as it goes on the wire: one item, or a large blob's parts.
pub fn split(item: WireItem) -> Vec<WireItem> {
    match item {
        WireItem::Blob(d) if d.len() > BLOB_PART => {
            let size = d.len() as u64;
            d.chunks(BLOB_PART)
                .map(|c| WireItem::BlobPart {
                    size,
                    data: c.to_vec(),
                })
                .collect()
        }
        other => vec![other],
    }
}

/// A changed path and its new value (`None`: removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEdit {
    pub path: String,
    pub value: Option<WireValue>,
}

/// `mode` is the git mode (0o100644, 0o100755, 0o120000).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireValue {
    pub mode: u32,
    pub blob: WireBlob,
}

/// A blob the receiver has, or a new one's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireBlob {
    Id(Oid),
    Data(Vec<u8>),
}

/// A batch of items: the postcard encoding of `Vec<WireItem>`, deflated (zlib format), and its
/// length before deflating (bounded, so inflating can stop at once on a bomb).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packed {
    pub raw_len: u32,
    pub zlib: Vec<u8>,
}

impl Packed {
    pub fn pack(items: &[WireItem]) -> Packed {
        use std::io::Write;
        let raw = postcard::to_allocvec(items).unwrap_or_default();
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        // Writing into a Vec cannot fail.
        let _ = z.write_all(&raw);
        Packed {
            raw_len: raw.len() as u32,
            zlib: z.finish().unwrap_or_default(),
        }
    }

    pub fn unpack(&self) -> Result<Vec<WireItem>, DecodeError> {
        use std::io::Read;
        let len = self.raw_len as usize;
        if len > super::connection::MAX_MESSAGE {
            return Err(DecodeError::Bound(
                "a batch inflating past the limit".into(),
            ));
        }
        let mut raw = Vec::with_capacity(len.min(1 << 20));
        flate2::read::ZlibDecoder::new(&self.zlib[..])
            .take(len as u64 + 1)
            .read_to_end(&mut raw)
            .map_err(|e| DecodeError::Bound(format!("a batch does not inflate: {e}")))?;
        if raw.len() != len {
            return Err(DecodeError::Bound(format!(
                "a batch inflated to {} bytes, it said {len}",
                raw.len()
            )));
        }
        let (items, rest): (Vec<WireItem>, &[u8]) = postcard::take_from_bytes(&raw)?;
        if !rest.is_empty() {
            return Err(DecodeError::Trailing(rest.len()));
        }
        Ok(items)
    }
}

/// A message that could not be decoded or breaks a bound.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("undecodable message: {0}")]
    Postcard(#[from] postcard::Error),
    #[error("message has {0} trailing bytes")]
    Trailing(usize),
    #[error("message breaks a bound: {0}")]
    Bound(String),
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        // Serializing our own types into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        let (msg, rest): (Message, &[u8]) = postcard::take_from_bytes(bytes)?;
        if !rest.is_empty() {
            return Err(DecodeError::Trailing(rest.len()));
        }
        msg.check()?;
        Ok(msg)
    }

    /// The bounds a decoded message must keep.
    pub fn check(&self) -> Result<(), DecodeError> {
        let bound = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(DecodeError::Bound(what.to_owned()))
            }
        };
        match self {
            Message::Announce(a) => {
                bound(a.node.len() <= 64, "node id over 64 bytes")?;
                bound(a.clock.len() <= MAX_CLOCK_NODES, "clock too large")?;
                bound(a.peers.len() <= MAX_PEERS_PER_ANNOUNCE, "too many peers")?;
                bound(
                    a.peers.iter().chain(&a.listen).all(|p| p.len() <= 256),
                    "peer address over 256 bytes",
                )
            }
            Message::Pull { have, .. } => bound(have.len() <= MAX_HAVES, "too many haves"),
            Message::Refused { reason } => bound(reason.len() <= 4096, "reason too long"),
            Message::Items(_) | Message::End { .. } | Message::Bye => Ok(()),
        }
    }
}

pub fn oid(id: ObjectId) -> Oid {
    let mut out = [0u8; 20];
    out.copy_from_slice(id.as_slice());
    out
}

pub fn object_id(o: &Oid) -> ObjectId {
    ObjectId::from_bytes_or_panic(o)
}

pub fn clock_to_wire(c: &VectorClock) -> Vec<(String, u64)> {
    c.iter().map(|(n, v)| (n.as_str().to_owned(), v)).collect()
}

/// The clock an announce names, with nodes that are not valid ids dropped.
pub fn clock_from_wire(entries: &[(String, u64)]) -> VectorClock {
    entries
        .iter()
        .filter_map(|(node, v)| Some((crate::db::NodeId::new(node).ok()?, *v)))
        .collect()
}

impl From<Item> for WireItem {
    fn from(item: Item) -> WireItem {
        match item {
            Item::Blob(d) => WireItem::Blob(d),
            Item::Tree(d) => WireItem::Tree(d),
            Item::Commit { data, edits } => WireItem::Commit {
                data,
                edits: edits.map(|es| {
                    es.into_iter()
                        .map(|e| WireEdit {
                            path: e.path,
                            value: e.value.map(|(m, b)| WireValue {
                                mode: m.octal(),
                                blob: match b {
                                    EditBlob::Known(id) => WireBlob::Id(oid(id)),
                                    EditBlob::Inline(d) => WireBlob::Data(d),
                                },
                            }),
                        })
                        .collect()
                }),
            },
        }
    }
}

impl WireItem {
    /// The item, or why it is malformed (an unknown mode).
    pub fn into_item(self) -> Result<Item, DecodeError> {
        Ok(match self {
            WireItem::Blob(d) => Item::Blob(d),
            WireItem::BlobPart { .. } => {
                return Err(DecodeError::Bound("a blob part out of place".into()));
            }
            WireItem::Tree(d) => Item::Tree(d),
            WireItem::Commit { data, edits } => Item::Commit {
                data,
                edits: match edits {
                    None => None,
                    Some(es) => Some(
                        es.into_iter()
                            .map(|e| {
                                let value = match e.value {
                                    None => None,
                                    Some(v) => {
                                        let mode = match v.mode {
                                            0o100644 => ValueMode::Regular,
                                            0o100755 => ValueMode::Executable,
                                            0o120000 => ValueMode::Symlink,
                                            m => {
                                                return Err(DecodeError::Bound(format!(
                                                    "edit of {:?} has mode {m:o}",
                                                    e.path
                                                )));
                                            }
                                        };
                                        let blob = match v.blob {
                                            WireBlob::Id(id) => EditBlob::Known(object_id(&id)),
                                            WireBlob::Data(d) => EditBlob::Inline(d),
                                        };
                                        Some((mode, blob))
                                    }
                                };
                                Ok(EntryEdit {
                                    path: e.path,
                                    value,
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                },
            },
        })
    }

    /// Bytes this item holds, for batching.
    pub fn weight(&self) -> usize {
        match self {
            WireItem::Blob(d) | WireItem::Tree(d) | WireItem::BlobPart { data: d, .. } => {
                d.len() + 8
            }
            WireItem::Commit { data, edits } => {
                data.len()
                    + edits.as_ref().map_or(0, |es| {
                        es.iter()
                            .map(|e| {
                                e.path.len()
                                    + match &e.value {
                                        Some(WireValue {
                                            blob: WireBlob::Data(d),
                                            ..
                                        }) => d.len() + 8,
                                        _ => 28,
                                    }
                            })
                            .sum()
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn announce() -> Message {
        Message::Announce(Announce {
            node: "n1".into(),
            listen: Some("127.0.0.1:7000".into()),
            head: Some([7; 20]),
            clock: vec![("n1".into(), 3)],
            hlc_millis: 1,
            hlc_counter: 2,
            peers: vec!["127.0.0.1:7001".into()],
            wants_yours: false,
        })
    }

    #[test]
    fn messages_round_trip() {
        for m in [
            announce(),
            Message::Pull {
                want: [1; 20],
                have: vec![[2; 20]],
            },
            Message::Items(Packed::pack(&[
                WireItem::Blob(b"v".to_vec()),
                WireItem::Commit {
                    data: b"c".to_vec(),
                    edits: Some(vec![WireEdit {
                        path: "a/b".into(),
                        value: Some(WireValue {
                            mode: 0o100644,
                            blob: WireBlob::Id([3; 20]),
                        }),
                    }]),
                },
            ])),
            Message::End { commits: 1 },
            Message::Refused {
                reason: "no".into(),
            },
            Message::Bye,
        ] {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn bounds_and_trailing_bytes_are_refused() {
        let mut bytes = announce().encode();
        bytes.push(0);
        assert!(matches!(
            Message::decode(&bytes),
            Err(DecodeError::Trailing(1))
        ));
        let Message::Announce(mut a) = announce() else {
            unreachable!()
        };
        a.peers = vec!["p".into(); MAX_PEERS_PER_ANNOUNCE + 1];
        assert!(matches!(
            Message::decode(&Message::Announce(a).encode()),
            Err(DecodeError::Bound(_))
        ));
        let bad_mode = WireItem::Commit {
            data: vec![],
            edits: Some(vec![WireEdit {
                path: "k".into(),
                value: Some(WireValue {
                    mode: 0o160000,
                    blob: WireBlob::Id([0; 20]),
                }),
            }]),
        };
        assert!(bad_mode.into_item().is_err());
        // A batch that lies about its inflated size, or is not deflate at all.
        let mut p = Packed::pack(&[WireItem::Blob(vec![0; 10_000])]);
        p.raw_len -= 1;
        assert!(p.unpack().is_err());
        p.raw_len = u32::MAX;
        assert!(p.unpack().is_err());
        let junk = Packed {
            raw_len: 10,
            zlib: vec![1, 2, 3],
        };
        assert!(junk.unpack().is_err());
    }

    #[test]
    fn blob_parts_must_agree_and_add_up() {
        let mut a = BlobAssembly::default();
        assert_eq!(
            a.add(10, 4).unwrap(),
            PartPlace {
                first: true,
                last: false
            }
        );
        assert!(a.is_open());
        assert_eq!(
            a.add(10, 6).unwrap(),
            PartPlace {
                first: false,
                last: true
            }
        );
        assert!(!a.is_open());
        assert!(BlobAssembly::default().add(MAX_BLOB + 1, 1).is_err());
        assert!(BlobAssembly::default().add(10, 0).is_err());
        assert!(BlobAssembly::default().add(10, 11).is_err());
        let mut a = BlobAssembly::default();
        a.add(10, 4).unwrap();
        assert!(a.add(11, 4).is_err(), "another size");
        // What the sender splits, the assembly takes back whole.
        let blob = vec![1u8; 2 * BLOB_PART + 3];
        let mut a = BlobAssembly::default();
        let parts = split(WireItem::Blob(blob.clone()));
        assert_eq!(parts.len(), 3);
        let mut last = false;
        for p in parts {
            let WireItem::BlobPart { size, data } = p else {
                panic!("not a part")
            };
            last = a.add(size, data.len()).unwrap().last;
        }
        assert!(last);
    }

    proptest! {
        /// Random bytes never panic the decoder, whatever they claim.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Message::decode(&bytes);
        }

        /// A valid message cut anywhere fails to decode instead of decoding to something else.
        #[test]
        fn truncated_messages_fail(cut in 0usize..60) {
            let bytes = announce().encode();
            let cut = cut.min(bytes.len() - 1);
            prop_assert!(Message::decode(&bytes[..cut]).is_err());
        }
    }
}
