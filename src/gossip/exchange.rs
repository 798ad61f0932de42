//! One exchange with a peer, over one connection: both announce, each pulls what it lacks
//! (push-pull in one round trip of announces), then both merge.
//!
//! ```text
//!  dialer                         responder
//!  Announce ───────────────────▶
//!           ◀─────────────────── Announce {wants_yours}
//!  [Pull ──────────────────────▶  (if the dialer lacks the responder's head)
//!           ◀─────────────────── Items* End]
//!  Bye ────────────────────────▶
//!           ◀─────────────────── [Pull  (if wants_yours)
//!  Items* End ─────────────────▶]
//!           ◀─────────────────── Bye
//! ```
//!
//! Received items are checked and written as they arrive (see `db::transfer`); nothing moves a
//! ref until the whole transfer is in, and then only the merge layer does, by compare-and-swap.
//!
//! Each message must come within the node's timeout, and the whole exchange within its
//! deadline ([`DEADLINE`] unless configured): a peer sending blob parts just fast enough for
//! the first would otherwise hold a pull, and the slot it takes, as long as it liked. An
//! exchange cut there is a failed one like any other: what it was writing is dropped (a blob
//! under way is a temp file, removed at once), and the peer is backed off.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::connection::{Connection, ConnectionError};
use super::message::{
    Announce, BlobAssembly, Message, Oid, Packed, WireItem, object_id, oid, split,
};
use super::node::Node;
use crate::db::{GitDb, ObjectId};

/// The slowest transfer a pull is allowed: a slow link's (100 Mbit/s is 12 MiB/s).
pub const MIN_THROUGHPUT: u64 = 10 << 20;
/// The longest one exchange may take, unless configured (`--exchange-deadline`): the largest
/// blob we accept ([`super::message::MAX_BLOB`], 16 GiB) at [`MIN_THROUGHPUT`], 1,638 s (27
/// min). A pull of more than that on a slow link fails and is tried again (what it wrote
/// stays, unreferenced); such a node needs a longer deadline.
pub const DEADLINE: Duration = Duration::from_secs(super::message::MAX_BLOB / MIN_THROUGHPUT);

/// Items are sent in batches of about this many bytes: big enough to amortize a frame, small
/// enough that the receiver writes while the sender reads.
const BATCH_BYTES: usize = 256 << 10;

/// What went wrong in an exchange.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error("the peer sent {got} where {expected} belongs")]
    Unexpected { expected: &'static str, got: String },
    #[error("the peer refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Db(#[from] crate::db::DbError),
    #[error("merging {head}: {source}")]
    Merge {
        head: ObjectId,
        source: Box<crate::merge::MergeError>,
    },
    #[error("a background task failed: {0}")]
    Task(String),
    #[error("the exchange passed its deadline of {0:?}")]
    Deadline(Duration),
}

pub type Result<T, E = ExchangeError> = std::result::Result<T, E>;

impl ExchangeError {
    /// `" (<the I/O error underneath>)"` when a local write failed for a reason its message
    /// hides (gix's errors say "could not stream loose object data", not "no space left"),
    /// else empty: what an operator needs in `status` to see a full disk.
    pub fn io_cause(&self) -> String {
        let io = match self {
            ExchangeError::Db(e) => e.io_error(),
            _ => None,
        };
        match io {
            Some(io) if !self.to_string().contains(&io.to_string()) => format!(" ({io})"),
            _ => String::new(),
        }
    }
}

fn describe(m: &Message) -> String {
    match m {
        Message::Announce(_) => "an announce".into(),
        Message::Pull { .. } => "a pull".into(),
        Message::Items(_) => "items".into(),
        Message::End { .. } => "an end".into(),
        Message::Refused { reason } => format!("a refusal ({reason})"),
        Message::Bye => "a bye".into(),
    }
}

/// What the exchange learned, for the caller to merge and log.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The peer's head, now in our repository, to merge.
    pub pulled: Option<(ObjectId, Announce)>,
    pub served: bool,
    pub sent: u64,
    pub received: u64,
}

/// Runs `exchange` within `deadline` (see the module docs).
pub async fn within<T>(
    deadline: Duration,
    exchange: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(deadline, exchange)
        .await
        .unwrap_or(Err(ExchangeError::Deadline(deadline)))
}

/// The dialer's side; `heard`: the node id the peer announces, once it has.
pub async fn dial(
    node: &Arc<Node>,
    conn: &mut Connection,
    heard: &mut Option<String>,
) -> Result<(Announce, Outcome)> {
    let timeout = node.cfg.timeout;
    conn.send(&Message::Announce(node.announce(false))).await?;
    let theirs = match conn.recv(timeout).await? {
        Message::Announce(a) => a,
        Message::Refused { reason } => return Err(ExchangeError::Refused(reason)),
        other => {
            return Err(ExchangeError::Unexpected {
                expected: "an announce",
                got: describe(&other),
            });
        }
    };
    *heard = Some(theirs.node.clone());
    let mut outcome = Outcome::default();
    if let Some(want) = node.wanted(&theirs) {
        pull(node, conn, want.head).await?;
        outcome.pulled = Some((want.head, theirs.clone()));
    }
    conn.send(&Message::Bye).await?;
    if theirs.wants_yours {
        outcome.served = serve_pulls(node, conn).await?;
    }
    outcome.sent = conn.sent;
    outcome.received = conn.received;
    Ok((theirs, outcome))
}

/// The responder's side, after the handshake; `heard` as for [`dial`]. A peer held off (see
/// `sources.rs`) gets our announce and may pull, but is not pulled from.
pub async fn respond(
    node: &Arc<Node>,
    conn: &mut Connection,
    heard: &mut Option<String>,
) -> Result<(Announce, Outcome)> {
    let timeout = node.cfg.timeout;
    let theirs = match conn.recv(timeout).await? {
        Message::Announce(a) => a,
        other => {
            return Err(ExchangeError::Unexpected {
                expected: "an announce",
                got: describe(&other),
            });
        }
    };
    *heard = Some(theirs.node.clone());
    let want = match node.held_off(conn.peer(), &theirs.node) {
        Some(left) => {
            log::debug!(
                "gossip: not pulling from node {:?} at {}: held off for {left:?}",
                theirs.node,
                conn.peer()
            );
            None
        }
        None => node.wanted(&theirs),
    };
    conn.send(&Message::Announce(node.announce(want.is_some())))
        .await?;
    let mut outcome = Outcome {
        served: serve_pulls(node, conn).await?,
        ..Outcome::default()
    };
    if let Some(want) = want {
        pull(node, conn, want.head).await?;
        outcome.pulled = Some((want.head, theirs.clone()));
    }
    conn.send(&Message::Bye).await?;
    outcome.sent = conn.sent;
    outcome.received = conn.received;
    Ok((theirs, outcome))
}

/// Answers the other side's pulls until its `Bye`; whether it pulled anything.
async fn serve_pulls(node: &Arc<Node>, conn: &mut Connection) -> Result<bool> {
    let mut served = false;
    loop {
        match conn.recv(node.cfg.timeout).await? {
            Message::Pull { want, have } => {
                serve(node, conn, want, have).await?;
                served = true;
            }
            Message::Bye => return Ok(served),
            other => {
                return Err(ExchangeError::Unexpected {
                    expected: "a pull or bye",
                    got: describe(&other),
                });
            }
        }
    }
}

/// Asks for `want` and receives it; every item is checked as it is written.
async fn pull(node: &Arc<Node>, conn: &mut Connection, want: ObjectId) -> Result<()> {
    let timeout = node.cfg.timeout;
    let db = node.db.clone();
    let have: Vec<Oid> = {
        let known = node.known_heads();
        tokio::task::block_in_place(|| db.haves(&known))?
            .into_iter()
            .take(super::message::MAX_HAVES)
            .map(oid)
            .collect()
    };
    conn.send(&Message::Pull {
        want: oid(want),
        have,
    })
    .await?;
    let mut receiver = db.receiver()?;
    let mut parts = BlobAssembly::default();
    let started = Instant::now();
    let mut importing = std::time::Duration::ZERO;
    loop {
        match conn.recv(timeout).await? {
            Message::Items(packed) => {
                node.counters.object_bytes_received.fetch_add(
                    packed.zlib.len() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                let t = Instant::now();
                tokio::task::block_in_place(|| -> Result<()> {
                    let items = packed
                        .unpack()
                        .map_err(|e| ExchangeError::Connection(e.into()))?;
                    let bad = |e: super::message::DecodeError| ExchangeError::Connection(e.into());
                    for item in items {
                        let item = match item {
                            WireItem::BlobPart { size, data } => {
                                // Each part goes to disk as it comes (see `BlobAssembly`).
                                let place = parts.add(size, data.len()).map_err(bad)?;
                                if place.first {
                                    receiver.begin_blob(size)?;
                                }
                                receiver.blob_part(&data)?;
                                if place.last {
                                    receiver.end_blob()?;
                                }
                                continue;
                            }
                            _ if parts.is_open() => {
                                return Err(bad(super::message::DecodeError::Bound(
                                    "an item inside a blob's parts".into(),
                                )));
                            }
                            other => other.into_item().map_err(bad)?,
                        };
                        receiver.add(item)?;
                    }
                    Ok(())
                })?;
                importing += t.elapsed();
            }
            Message::End { .. } if parts.is_open() => {
                return Err(ExchangeError::Unexpected {
                    expected: "the rest of a blob",
                    got: "an end".into(),
                });
            }
            Message::End { .. } => break,
            Message::Refused { reason } => return Err(ExchangeError::Refused(reason)),
            other => {
                return Err(ExchangeError::Unexpected {
                    expected: "items or an end",
                    got: describe(&other),
                });
            }
        }
    }
    let (commits, objects) = receiver.counts();
    let t = Instant::now();
    tokio::task::block_in_place(|| receiver.finish(want))?;
    importing += t.elapsed();
    log::debug!(
        "pulled {want} from {}: {commits} commit(s), {objects} object(s) in {:?} ({:?} \
         writing)",
        conn.peer(),
        started.elapsed(),
        importing
    );
    Ok(())
}

/// Answers a pull: the export runs on a blocking thread and hands batches over a bounded
/// channel, so a large catch-up streams instead of being built in memory first.
async fn serve(node: &Arc<Node>, conn: &mut Connection, want: Oid, have: Vec<Oid>) -> Result<()> {
    let want = object_id(&want);
    let db: Arc<GitDb> = node.db.clone();
    if !db.has_object(want) {
        conn.send(&Message::Refused {
            reason: format!("{want} is not here"),
        })
        .await?;
        return Err(ExchangeError::Refused(format!(
            "the peer wanted {want}, which is not here"
        )));
    }
    let haves: Vec<ObjectId> = have.iter().map(object_id).collect();
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel::<Vec<WireItem>>(4);
    let export = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let stats = db.export(want, &haves, &mut |item| {
            for w in split(WireItem::from(item)) {
                bytes += w.weight();
                batch.push(w);
                if bytes >= BATCH_BYTES {
                    bytes = 0;
                    if tx.blocking_send(std::mem::take(&mut batch)).is_err() {
                        return Err(crate::db::DbError::Replication {
                            reason: "the connection ended".into(),
                        });
                    }
                }
            }
            Ok(())
        })?;
        if !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        Ok::<_, crate::db::DbError>(stats)
    });
    while let Some(batch) = rx.recv().await {
        let packed = tokio::task::block_in_place(|| Packed::pack(&batch));
        conn.send(&Message::Items(packed)).await?;
    }
    let stats = export
        .await
        .map_err(|e| ExchangeError::Task(e.to_string()))??;
    conn.send(&Message::End {
        commits: stats.commits as u32,
    })
    .await?;
    log::debug!(
        "served {want} to {}: {} commit(s) ({} compact, {} whole) in {:?}",
        conn.peer(),
        stats.commits,
        stats.compact,
        stats.whole,
        started.elapsed()
    );
    Ok(())
}

/// Merges a pulled head into ours (one merge at a time per node).
pub async fn merge(node: &Arc<Node>, head: ObjectId, theirs: &Announce) -> Result<()> {
    let _one = node.merging.lock().await;
    let db = node.db.clone();
    let strategy = node.cfg.strategy.clone();
    let clock = super::message::clock_from_wire(&theirs.clock);
    let started = Instant::now();
    let before = node.db.head();
    let outcome = tokio::task::spawn_blocking(move || {
        crate::merge::merge(&db, head, Some(&clock), &strategy, super::service::now_ms())
    })
    .await
    .map_err(|e| ExchangeError::Task(e.to_string()))?
    .map_err(|source| ExchangeError::Merge {
        head,
        source: Box::new(source),
    })?;
    if let (crate::merge::MergeOutcome::NoOp, Some(ours)) = (&outcome, before)
        && node.db.head() == Some(ours)
    {
        node.settle(ours, head);
    }
    log::debug!(
        "merged {head} from {}: {outcome:?} in {:?}",
        theirs.node,
        started.elapsed()
    );
    Ok(())
}
