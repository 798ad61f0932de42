//! What crosses the door: requests, responses, and the frame around each (see the module
//! docs of [`crate::door`] for the wire format).

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::ValueMode;

/// The frame's first four bytes.
pub const MAGIC: [u8; 4] = *b"gdbd";

/// The protocol version, the frame's fifth byte.
pub const VERSION: u8 = 1;

const HEADER: usize = 9;

/// One request: a command, and what the client expects of the node that runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    /// The branch the client means (`--branch`); a daemon on another branch refuses.
    pub branch: String,
    /// The node id the client was given explicitly (`--node-id`), if any; a daemon that is
    /// another node refuses, rather than commit under a name the client did not ask for.
    pub node: Option<String>,
    pub command: Command,
}

/// The client's commands that a daemon serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Get {
        key: String,
    },
    Set {
        key: String,
        value: Vec<u8>,
        mode: ValueMode,
    },
    Rm {
        key: String,
        recursive: bool,
    },
    Ls {
        prefix: String,
        recursive: bool,
    },
    Commit {
        message: String,
    },
    Rollback,
    Status,
    Metrics,
    Log {
        n: u64,
    },
    Sync,
}

impl Command {
    /// Whether the command only reads: then a client that the door cannot serve (an answer too
    /// large, another branch) reads the repository itself, as it does without a daemon.
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Command::Get { .. }
                | Command::Ls { .. }
                | Command::Status
                | Command::Metrics
                | Command::Log { .. }
        )
    }

    /// The command's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Get { .. } => "get",
            Command::Set { .. } => "set",
            Command::Rm { .. } => "rm",
            Command::Ls { .. } => "ls",
            Command::Commit { .. } => "commit",
            Command::Rollback => "rollback",
            Command::Status => "status",
            Command::Metrics => "metrics",
            Command::Log { .. } => "log",
            Command::Sync => "sync",
        }
    }
}

/// What a command did, as the client prints it ([`Response::print`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// `get`: the value.
    Value(Vec<u8>),
    /// `set`, `rm`: done and durable.
    Done,
    /// `ls`, `log`: one line each.
    Lines(Vec<String>),
    Committed {
        id: String,
    },
    NothingToCommit,
    RolledBack {
        dropped: u64,
    },
    /// `status`: the JSON of [`crate::db::Status`], pretty-printed.
    Status {
        json: String,
    },
    /// `metrics`: the Prometheus text, as it is.
    Metrics {
        text: String,
    },
    /// `sync`: the replication round's summary.
    Synced {
        summary: String,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
}

/// Why a command failed, which decides the client's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// No such key, or not the kind of node asked for (exit 1).
    Missing,
    /// Any other error of the command (exit 2).
    Failed,
    /// The request or its answer does not fit in a frame (exit 2; a read is then served by
    /// the client itself).
    TooLarge,
    /// The daemon will not serve this client: another uid, branch or node, or too many
    /// requests at once (exit 2; a read is then served by the client itself).
    Refused,
    /// The request was not understood: not a frame, another version, undecodable (exit 2).
    Protocol,
}

impl ErrorKind {
    /// The `gitdb` client's exit code for an error of this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Missing => 1,
            ErrorKind::Failed | ErrorKind::TooLarge | ErrorKind::Refused | ErrorKind::Protocol => 2,
        }
    }
}

impl Response {
    pub fn error(kind: ErrorKind, message: impl std::fmt::Display) -> Response {
        Response::Error {
            kind,
            message: message.to_string(),
        }
    }

    /// Prints the response as the `gitdb` client does (what a command prints to stdout, and
    /// notes and errors as `gitdb: ...` to stderr); returns the exit code.
    pub fn print(&self, out: &mut impl Write, err: &mut impl Write) -> std::io::Result<u8> {
        match self {
            Response::Value(v) => out.write_all(v)?,
            Response::Done => {}
            Response::Lines(lines) => {
                for l in lines {
                    writeln!(out, "{l}")?;
                }
            }
            Response::Committed { id } => writeln!(out, "{id}")?,
            Response::NothingToCommit => writeln!(err, "gitdb: nothing to commit")?,
            Response::RolledBack { dropped } => {
                writeln!(err, "gitdb: dropped {dropped} uncommitted change(s)")?
            }
            Response::Status { json } => writeln!(out, "{json}")?,
            Response::Metrics { text } => write!(out, "{text}")?,
            Response::Synced { summary } => writeln!(out, "{summary}")?,
            Response::Error { kind, message } => {
                writeln!(err, "gitdb: {message}")?;
                return Ok(kind.exit_code());
            }
        }
        out.flush()?;
        Ok(0)
    }
}

/// A frame that could not be read, written or understood.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the connection closed before a whole frame arrived")]
    Truncated,
    #[error("not a gitdb door frame (bad magic)")]
    BadMagic,
    #[error("door protocol version {got}, but this side speaks version {VERSION}")]
    Version { got: u8 },
    #[error("a frame of {len} bytes is over the door's limit of {max} bytes (64 MiB values)")]
    TooLarge { len: u64, max: usize },
    #[error("undecodable frame: {0}")]
    Decode(postcard::Error),
    #[error("{0} bytes after the message in the frame")]
    Trailing(usize),
}

/// Encodes `msg` as a frame payload, refusing one over `max` bytes.
pub fn encode<T: Serialize>(msg: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let payload = postcard::to_stdvec(msg).map_err(FrameError::Decode)?;
    if payload.len() > max {
        return Err(FrameError::TooLarge {
            len: payload.len() as u64,
            max,
        });
    }
    Ok(payload)
}

/// Decodes a whole frame payload; trailing bytes are an error.
pub fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, FrameError> {
    let (msg, rest) = postcard::take_from_bytes(payload).map_err(FrameError::Decode)?;
    if !rest.is_empty() {
        return Err(FrameError::Trailing(rest.len()));
    }
    Ok(msg)
}

/// Writes one frame holding `payload` (from [`encode`]).
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> Result<(), FrameError> {
    let len = u32::try_from(payload.len()).map_err(|_| FrameError::TooLarge {
        len: payload.len() as u64,
        max: u32::MAX as usize,
    })?;
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(&MAGIC);
    header[4] = VERSION;
    header[5..].copy_from_slice(&len.to_be_bytes());
    w.write_all(&header)?;
    w.write_all(payload)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame's payload, at most `max` bytes. The buffer grows with what arrives, not
/// with what the length prefix claims.
pub fn read_frame(r: &mut impl Read, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; HEADER];
    read_full(r, &mut header)?;
    if header[..4] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    if header[4] != VERSION {
        return Err(FrameError::Version { got: header[4] });
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&header[5..]);
    let len = u64::from(u32::from_be_bytes(len));
    if len > max as u64 {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut payload = Vec::new();
    r.take(len).read_to_end(&mut payload)?;
    if (payload.len() as u64) < len {
        return Err(FrameError::Truncated);
    }
    Ok(payload)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<(), FrameError> {
    match r.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Truncated),
        Err(e) => Err(FrameError::Io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(msg: &impl Serialize) -> Vec<u8> {
        let mut buf = Vec::new();
        write_frame(&mut buf, &encode(msg, 1 << 20).unwrap()).unwrap();
        buf
    }

    #[test]
    fn a_request_survives_the_round_trip() {
        let ask = Ask {
            branch: "main".into(),
            node: Some("n1".into()),
            command: Command::Set {
                key: "/a/b".into(),
                value: vec![0, 1, 255],
                mode: ValueMode::Executable,
            },
        };
        let buf = framed(&ask);
        let payload = read_frame(&mut &buf[..], 1 << 20).unwrap();
        assert_eq!(decode::<Ask>(&payload).unwrap(), ask);
    }

    #[test]
    fn bad_frames_are_told_apart() {
        let good = framed(&Response::Done);
        let mut bad_magic = good.clone();
        bad_magic[0] = b'x';
        assert!(matches!(
            read_frame(&mut &bad_magic[..], 1 << 20),
            Err(FrameError::BadMagic)
        ));
        let mut other_version = good.clone();
        other_version[4] = 9;
        assert!(matches!(
            read_frame(&mut &other_version[..], 1 << 20),
            Err(FrameError::Version { got: 9 })
        ));
        let mut huge = good.clone();
        huge[5..9].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            read_frame(&mut &huge[..], 1 << 20),
            Err(FrameError::TooLarge { .. })
        ));
        let truncated = &good[..good.len() - 1];
        assert!(matches!(
            read_frame(&mut &truncated[..], 1 << 20),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            read_frame(&mut &good[..3], 1 << 20),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            decode::<Ask>(&[0xff; 3]),
            Err(FrameError::Decode(_))
        ));
        let mut trailing = encode(&Response::Done, 100).unwrap();
        trailing.push(0);
        assert!(matches!(
            decode::<Response>(&trailing),
            Err(FrameError::Trailing(1))
        ));
        assert!(matches!(
            encode(&Response::Value(vec![0; 100]), 50),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn responses_print_as_the_client_always_did() {
        let print = |r: Response| {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let code = r.print(&mut out, &mut err).unwrap();
            (
                String::from_utf8(out).unwrap(),
                String::from_utf8(err).unwrap(),
                code,
            )
        };
        assert_eq!(
            print(Response::Lines(vec!["a".into(), "b/".into()])),
            ("a\nb/\n".into(), String::new(), 0)
        );
        assert_eq!(
            print(Response::NothingToCommit),
            (String::new(), "gitdb: nothing to commit\n".into(), 0)
        );
        assert_eq!(
            print(Response::RolledBack { dropped: 2 }),
            (
                String::new(),
                "gitdb: dropped 2 uncommitted change(s)\n".into(),
                0
            )
        );
        assert_eq!(
            print(Response::error(ErrorKind::Missing, "no such key: /a")),
            (String::new(), "gitdb: no such key: /a\n".into(), 1)
        );
        assert_eq!(
            print(Response::error(ErrorKind::Failed, "boom")).2,
            2,
            "errors other than a missing key exit 2"
        );
    }
}
