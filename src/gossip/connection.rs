//! One authenticated, encrypted connection to a peer, carrying [`Message`]s.
//!
//! On the wire, in order (docs/protocol.md has the details):
//! 1. a preamble each side writes at once: `GITDB\0` and the protocol version (u16, big
//!    endian), so that a version mismatch is told apart from a wrong key in the log;
//! 2. a Noise `NNpsk0_25519_ChaChaPoly_BLAKE2s` handshake keyed with the cluster key (one round
//!    trip; the responder cannot decrypt the first message without the key and hangs up, so a
//!    peer without it never gets a frame read, nor sends one);
//! 3. frames: each Noise message travels behind a 2-byte length (tokio-util's codec, which
//!    refuses an oversized prefix before allocating); a message of ours is split into Noise
//!    messages of at most 65,519 plaintext bytes, the first beginning with the message's u32
//!    length, checked against [`MAX_MESSAGE`] before anything is buffered.
//!
//! Every connection serves one exchange and then closes: a bulk transfer to one peer never
//! delays another peer's announce, and there is no connection state to go stale.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::key::ClusterKey;
use super::message::{DecodeError, Message};

pub const MAGIC: [u8; 6] = *b"GITDB\0";
pub const VERSION: u16 = 1;
/// The largest message a peer may send (a batch of items; the sender keeps batches far
/// smaller, see `exchange`). A value larger than this cannot be replicated.
pub const MAX_MESSAGE: usize = 64 << 20;
const NOISE_MAX: usize = 65_535;
const NOISE_TAG: usize = 16;
const CHUNK: usize = NOISE_MAX - NOISE_TAG;
const PATTERN: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
/// Bound into the handshake: a peer of another protocol version cannot complete it.
const PROLOGUE: &[u8] = b"gitdb-gossip/1";

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the peer does not speak the gitdb protocol")]
    NotGitdb,
    #[error("the peer speaks protocol version {theirs}, we speak {VERSION}")]
    Version { theirs: u16 },
    #[error("handshake failed (a different cluster key?): {0}")]
    Handshake(String),
    #[error("encryption: {0}")]
    Noise(#[from] snow::Error),
    #[error("the peer announced a message of {len} bytes (limit {MAX_MESSAGE})")]
    TooBig { len: usize },
    #[error("bad message: {0}")]
    Decode(#[from] DecodeError),
    #[error("timed out while {0}")]
    Timeout(&'static str),
    #[error("the peer closed the connection")]
    Closed,
}

pub type Result<T, E = ConnectionError> = std::result::Result<T, E>;

/// Over a TCP stream in the service; over any byte stream for the fuzz targets (the handshake
/// and the framing are the same code either way).
pub struct Connection<S = TcpStream> {
    framed: Framed<S, LengthDelimitedCodec>,
    noise: snow::TransportState,
    peer: SocketAddr,
    /// Bytes on the wire (frames with their length prefixes, preamble and handshake).
    pub sent: u64,
    pub received: u64,
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(2)
        .max_frame_length(NOISE_MAX)
        .new_codec()
}

fn builder(key: &ClusterKey) -> Result<snow::Builder<'_>> {
    let params: snow::params::NoiseParams = PATTERN.parse()?;
    Ok(snow::Builder::new(params)
        .psk(0, key.psk())?
        .prologue(PROLOGUE)?)
}

async fn preamble<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> Result<()> {
    let mut ours = [0u8; 8];
    ours[..6].copy_from_slice(&MAGIC);
    ours[6..].copy_from_slice(&VERSION.to_be_bytes());
    stream.write_all(&ours).await?;
    let mut theirs = [0u8; 8];
    match stream.read_exact(&mut theirs).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(ConnectionError::Closed);
        }
        Err(e) => return Err(e.into()),
    }
    if theirs[..6] != MAGIC {
        return Err(ConnectionError::NotGitdb);
    }
    let v = u16::from_be_bytes([theirs[6], theirs[7]]);
    if v != VERSION {
        return Err(ConnectionError::Version { theirs: v });
    }
    Ok(())
}

impl Connection {
    /// Dials `addr` and runs the preamble and handshake as initiator, within `timeout`.
    pub async fn connect(addr: SocketAddr, key: &ClusterKey, timeout: Duration) -> Result<Self> {
        tokio::time::timeout(timeout, async {
            let stream = TcpStream::connect(addr).await?;
            Self::handshake(stream, key, true).await
        })
        .await
        .map_err(|_| ConnectionError::Timeout("connecting"))?
    }

    /// Runs the preamble and handshake as responder on an accepted stream, within `timeout`.
    pub async fn accept(stream: TcpStream, key: &ClusterKey, timeout: Duration) -> Result<Self> {
        tokio::time::timeout(timeout, Self::handshake(stream, key, false))
            .await
            .map_err(|_| ConnectionError::Timeout("in the handshake"))?
    }

    async fn handshake(stream: TcpStream, key: &ClusterKey, initiator: bool) -> Result<Self> {
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?;
        Connection::over(stream, peer, key, initiator).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Runs the preamble and handshake on `stream` (with no deadline: the caller sets one),
    /// `peer` being what the connection reports as its other end.
    pub async fn over(
        mut stream: S,
        peer: SocketAddr,
        key: &ClusterKey,
        initiator: bool,
    ) -> Result<Self> {
        preamble(&mut stream).await?;
        let mut framed = Framed::new(stream, codec());
        let b = builder(key)?;
        let mut hs = if initiator {
            b.build_initiator()?
        } else {
            b.build_responder()?
        };
        let mut buf = vec![0u8; NOISE_MAX];
        let (mut sent, mut received) = (8u64, 8u64);
        while !hs.is_handshake_finished() {
            if hs.is_my_turn() {
                let n = hs.write_message(&[], &mut buf)?;
                framed
                    .send(Bytes::copy_from_slice(&buf[..n]))
                    .await
                    .map_err(ConnectionError::Io)?;
                sent += n as u64 + 2;
            } else {
                let frame = match framed.next().await {
                    Some(f) => f?,
                    None => {
                        return Err(ConnectionError::Handshake(
                            "the peer hung up during the handshake".into(),
                        ));
                    }
                };
                received += frame.len() as u64 + 2;
                hs.read_message(&frame, &mut buf)
                    .map_err(|e| ConnectionError::Handshake(e.to_string()))?;
            }
        }
        Ok(Connection {
            framed,
            noise: hs.into_transport_mode()?,
            peer,
            sent,
            received,
        })
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Encrypts and sends one message.
    pub async fn send(&mut self, msg: &Message) -> Result<()> {
        let body = msg.encode();
        let mut plain = Vec::with_capacity(body.len() + 4);
        plain.extend_from_slice(&(body.len() as u32).to_be_bytes());
        plain.extend_from_slice(&body);
        let mut buf = vec![0u8; NOISE_MAX];
        for chunk in plain.chunks(CHUNK) {
            let n = self.noise.write_message(chunk, &mut buf)?;
            self.sent += n as u64 + 2;
            self.framed
                .feed(Bytes::copy_from_slice(&buf[..n]))
                .await
                .map_err(ConnectionError::Io)?;
        }
        SinkExt::<Bytes>::flush(&mut self.framed)
            .await
            .map_err(ConnectionError::Io)?;
        Ok(())
    }

    /// Encrypts and sends `plain` as one Noise message, as it is: no length, no encoding. Only
    /// for tests that play a hostile peer (a frame that lies about its length, say).
    #[doc(hidden)]
    pub async fn send_raw_chunk(&mut self, plain: &[u8]) -> Result<()> {
        let mut buf = vec![0u8; NOISE_MAX];
        let n = self.noise.write_message(plain, &mut buf)?;
        self.framed
            .send(Bytes::copy_from_slice(&buf[..n]))
            .await
            .map_err(ConnectionError::Io)
    }

    async fn next_chunk(&mut self, buf: &mut [u8]) -> Result<usize> {
        let frame: BytesMut = match self.framed.next().await {
            Some(f) => f?,
            None => return Err(ConnectionError::Closed),
        };
        self.received += frame.len() as u64 + 2;
        Ok(self.noise.read_message(&frame, buf)?)
    }

    /// Receives and decodes one message, waiting at most `timeout` for each part of it.
    pub async fn recv(&mut self, timeout: Duration) -> Result<Message> {
        let mut buf = vec![0u8; NOISE_MAX];
        let n = tokio::time::timeout(timeout, self.next_chunk(&mut buf))
            .await
            .map_err(|_| ConnectionError::Timeout("waiting for a message"))??;
        if n < 4 {
            return Err(ConnectionError::Decode(DecodeError::Bound(
                "a message shorter than its length".into(),
            )));
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > MAX_MESSAGE {
            return Err(ConnectionError::TooBig { len });
        }
        let mut body = Vec::with_capacity(len.min(n));
        body.extend_from_slice(&buf[4..n]);
        while body.len() < len {
            let n = tokio::time::timeout(timeout, self.next_chunk(&mut buf))
                .await
                .map_err(|_| ConnectionError::Timeout("receiving a message"))??;
            body.extend_from_slice(&buf[..n]);
        }
        if body.len() != len {
            return Err(ConnectionError::Decode(DecodeError::Bound(format!(
                "a message of {} bytes said it had {len}",
                body.len()
            ))));
        }
        Ok(Message::decode(&body)?)
    }
}
