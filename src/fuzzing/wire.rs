//! Fuzz targets for what a peer sends: message bodies, the frames that carry them after the
//! handshake, and the handshake itself as the responder sees it. The frame and handshake
//! targets run the real [`Connection`] code over an in-memory stream.

use std::net::SocketAddr;
use std::time::Duration;

use crate::gossip::ClusterKey;
use crate::gossip::connection::{Connection, ConnectionError, MAGIC, MAX_MESSAGE, VERSION};
use crate::gossip::message::{Message, Packed, WireItem};

thread_local! {
    /// One small runtime per fuzzing thread (making one per input would dominate the time).
    static RUNTIME: Option<tokio::runtime::Runtime> = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .ok();
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    RUNTIME.with(|rt| match rt {
        Some(rt) => rt.block_on(f),
        None => panic!("cannot start a tokio runtime for the fuzz target"),
    })
}

fn nowhere() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9))
}

/// Any bytes as a gossip message body, and any bytes as a deflated batch: decoding never
/// panics, never inflates past the declared size, and what decodes encodes back to the same.
pub fn message_decode(data: &[u8]) {
    if let Ok(m) = Message::decode(data) {
        assert_eq!(Message::decode(&m.encode()).ok().as_ref(), Some(&m));
        if let Message::Items(p) = &m
            && let Ok(items) = p.unpack()
        {
            for item in items {
                let _ = item.into_item();
            }
        }
    }
    let raw_len = data.first().map_or(0, |b| u32::from(*b) << 8);
    let p = Packed {
        raw_len,
        zlib: data.to_vec(),
    };
    if let Ok(items) = p.unpack() {
        assert!(Packed::pack(&items).raw_len <= raw_len);
    }
}

/// Any sequence of plaintext chunks, as an authenticated peer's Noise messages after a real
/// handshake (input: a chunk count, then per chunk a 2-byte length and that many bytes; a
/// first chunk may be given a huge length prefix): [`Connection::recv`] never panics, never
/// buffers past [`MAX_MESSAGE`], and every message it returns is one that encodes back to
/// itself; the stream ends in an error, not a hang.
pub fn frames(data: &[u8]) {
    let mut input = super::Bytes::new(data);
    let n = 1 + input.below(8);
    let mut chunks: Vec<Vec<u8>> = Vec::with_capacity(n);
    for _ in 0..n {
        let mut chunk = Vec::new();
        match input.below(4) {
            // A message length claim (the first 4 bytes of a message) and a little body.
            0 => {
                let len = match input.below(4) {
                    0 => u32::MAX,
                    1 => MAX_MESSAGE as u32 + 1,
                    _ => u32::from(input.u16()),
                };
                chunk.extend_from_slice(&len.to_be_bytes());
                chunk.extend_from_slice(input.take(64));
            }
            // A well-formed message of random bytes.
            1 => {
                let body = input.take(256);
                chunk.extend_from_slice(&(body.len() as u32).to_be_bytes());
                chunk.extend_from_slice(body);
            }
            _ => chunk.extend_from_slice(input.take(512)),
        }
        chunks.push(chunk);
    }
    let key = ClusterKey::open();
    block_on(async {
        let (a, b) = tokio::io::duplex(1 << 16);
        let sender = async {
            let Ok(mut c) = Connection::over(a, nowhere(), &key, true).await else {
                panic!("an in-memory handshake with the right key failed");
            };
            for chunk in &chunks {
                if c.send_raw_chunk(chunk).await.is_err() {
                    break;
                }
            }
            // Dropping `c` closes the stream: the receiver sees the end.
        };
        let receiver = async {
            let Ok(mut c) = Connection::over(b, nowhere(), &key, false).await else {
                panic!("an in-memory handshake with the right key failed");
            };
            for _ in 0..=chunks.len() {
                match c.recv(Duration::from_secs(5)).await {
                    Ok(m) => assert_eq!(Message::decode(&m.encode()).ok().as_ref(), Some(&m)),
                    Err(ConnectionError::Timeout(w)) => panic!("recv hung ({w})"),
                    Err(_) => return,
                }
            }
            panic!("more messages than chunks");
        };
        tokio::join!(sender, receiver);
    });
}

/// Any bytes as what a dialer sends a responder (after a good preamble when the first input
/// byte is even, raw otherwise): the handshake never panics and never completes, since
/// completing needs the cluster key's proof that random bytes cannot forge; and the
/// responder stops at the end of the input instead of waiting for more.
pub fn handshake(data: &[u8]) {
    let mut bytes = Vec::with_capacity(data.len() + 8);
    if data.first().is_some_and(|b| b % 2 == 0) {
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&VERSION.to_be_bytes());
        bytes.extend_from_slice(&data[1..]);
    } else {
        bytes.extend_from_slice(data);
    }
    let key = ClusterKey::from_secret(b"fuzzing cluster key");
    let stream = tokio::io::join(&bytes[..], tokio::io::sink());
    let r = block_on(async {
        tokio::time::timeout(
            Duration::from_secs(5),
            Connection::over(stream, nowhere(), &key, false),
        )
        .await
    });
    match r {
        Err(_) => panic!("the handshake waited past the end of its input"),
        Ok(Ok(_)) => panic!("a handshake completed without the cluster key"),
        Ok(Err(_)) => {}
    }
}

/// Items as a peer may send them in pieces: [`crate::gossip::message::BlobAssembly`] ends a
/// blob exactly when its parts brought the size they claim, never past it, whatever they claim.
pub fn blob_parts(data: &[u8]) {
    let mut input = super::Bytes::new(data);
    let mut parts = crate::gossip::message::BlobAssembly::default();
    let mut got = 0u64;
    while !input.is_empty() {
        let size = match input.below(4) {
            0 => 10 << 30,
            1 => u64::MAX,
            _ => u64::from(input.u16()),
        };
        let data = input.take(300).to_vec();
        match parts.add(size, data.len()) {
            Ok(place) => {
                got += data.len() as u64;
                assert!(got <= size, "{got} bytes accepted for a blob of {size}");
                assert_eq!(place.last, got == size);
                assert_eq!(place.last, !parts.is_open());
                if place.last {
                    got = 0;
                }
            }
            Err(_) => return,
        }
    }
    let _ = WireItem::Blob(Vec::new()).into_item();
}
