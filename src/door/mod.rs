//! The daemon's local door: while a daemon (`gitdb-mount`, `gitdb serve`) holds a repository's
//! writer lock, the `gitdb` client's commands go to it over a unix socket beside the
//! repository instead of failing with "locked by pid N".
//!
//! - [`socket`]: where the socket is (`<git-dir>/gitdb/door.sock`, beside the journal and the
//!   writer lock), owner-only permissions, the peer-uid check, stale sockets, long paths.
//! - [`protocol`]: what crosses the socket: one [`Ask`] (a [`Command`] with the branch and
//!   node the client expects), one [`Response`], each in a size-limited frame.
//! - [`exec`]: runs a [`Command`] against a [`GitDb`](crate::GitDb): the one implementation
//!   shared by the daemon's door and the client's own path without a daemon, so both print
//!   the same bytes ([`Response::print`]).
//! - [`server`]: [`serve`] starts the door on a db; the [`DoorGuard`] it returns stops it and
//!   removes the socket when dropped.
//! - [`client`]: [`client::run`] sends a command to the door if one answers, else runs it on
//!   the repository directly.
//!
//! ## Wire format
//! One request and one response per connection. Each is a frame: the magic `gdbd`, the
//! protocol version (one byte, [`protocol::VERSION`]), the payload length (u32, big-endian,
//! at most [`MAX_FRAME`]), then the payload: the [`Ask`] or [`Response`] in postcard (serde's
//! compact binary encoding: varint lengths and enum tags, raw bytes for values). A frame with
//! a wrong magic, another version, an oversized length, a truncated or undecodable payload, or
//! trailing bytes is answered with a [`Response::Error`] of kind [`ErrorKind::Protocol`]
//! and the connection closed; the daemon keeps serving.
//!
//! ## Limits
//! Values travel whole in one frame, so a value over [`MAX_VALUE`] (64 MiB) cannot cross the
//! door: the client refuses to send such a `set` (write it through the mount), and a `get`,
//! `ls` or `log` whose answer would not fit is answered [`ErrorKind::TooLarge`], upon which the
//! client reads the repository itself (read-only, as without a daemon).

pub mod client;
pub mod exec;
pub mod protocol;
pub mod server;
pub mod socket;

pub use exec::execute;
pub use protocol::{Ask, Command, ErrorKind, FrameError, Response};
pub use server::{DoorGuard, serve};
pub use socket::socket_path;

use std::path::PathBuf;

/// The largest value a `set` or `get` carries through the door.
pub const MAX_VALUE: usize = 64 << 20;

/// The largest frame payload: a value plus room for its key and the envelope.
pub const MAX_FRAME: usize = MAX_VALUE + (1 << 20);

/// Errors of the door, on either side. Each names the socket it concerns.
#[derive(Debug, thiserror::Error)]
pub enum DoorError {
    #[error("door {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("door {path}: {source}")]
    Frame { path: PathBuf, source: FrameError },
    #[error("door {path} exists and is not a socket: remove it")]
    NotASocket { path: PathBuf },
    #[error("door {path} is served by another process")]
    InUse { path: PathBuf },
    #[error("a read-only handle holds no writer lock and serves no door")]
    ReadOnly,
    #[error("starting the door's thread: {0}")]
    Thread(std::io::Error),
}

#[cfg(test)]
mod tests;
