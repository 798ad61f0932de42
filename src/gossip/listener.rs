//! Accepting peers: the listener's loop, and the bounds that keep a flood of connections from
//! costing more than a few sockets — a cap on connections still in their handshake (the
//! oldest is closed), a deadline for it, and a cap on exchanges served at once. A file of its
//! own because these bounds are what stands between the node and anyone who can reach its
//! port (`tests/gossip_flood.rs` holds it to them), apart from what an exchange does.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::connection::Connection;
use super::exchange;
use super::node::{Node, lock};

/// Most inbound exchanges served at once (authenticated peers); more wait for a slot, after
/// their handshake, holding only their socket.
const MAX_INBOUND: usize = 64;
/// Most inbound connections still in their preamble or handshake (not yet proven to hold the
/// cluster key). A new one beyond this closes the oldest: idle or slow-loris connections
/// never hold more than this many sockets, and never block the accept loop, while a good
/// peer's handshake (one round trip) is done long before 128 newer connections push it out.
pub const MAX_HANDSHAKING: usize = 128;
/// The longest an inbound preamble and handshake may take (or the exchange timeout, if
/// shorter): a peer that sends a byte a second is cut off after this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The inbound connections in their handshake, oldest first, each with the signal that
/// closes it (see [`MAX_HANDSHAKING`]).
#[derive(Default)]
struct Handshaking {
    next: u64,
    open: std::collections::VecDeque<(u64, Arc<tokio::sync::Notify>)>,
}

/// A connection's place in [`Handshaking`], given back when its handshake ends either way.
struct HandshakeSlot {
    table: Arc<Mutex<Handshaking>>,
    id: u64,
}

impl HandshakeSlot {
    /// Takes a place, closing the oldest handshake if all are taken.
    fn take(table: &Arc<Mutex<Handshaking>>) -> (HandshakeSlot, Arc<tokio::sync::Notify>) {
        let mut t = lock(table);
        if t.open.len() >= MAX_HANDSHAKING
            && let Some((_, oldest)) = t.open.pop_front()
        {
            // notify_one keeps the wake-up if the task is not waiting yet.
            oldest.notify_one();
        }
        let id = t.next;
        t.next += 1;
        let evict = Arc::new(tokio::sync::Notify::new());
        t.open.push_back((id, evict.clone()));
        (
            HandshakeSlot {
                table: table.clone(),
                id,
            },
            evict,
        )
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        lock(&self.table).open.retain(|(id, _)| *id != self.id);
    }
}

pub(super) async fn accept_loop(
    node: Arc<Node>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_INBOUND));
    let handshaking = Arc::new(Mutex::new(Handshaking::default()));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (stream, from) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors, say: wait instead of spinning on the error.
                log::warn!("gossip: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !node.cfg.key.is_secret() && !node.cfg.insecure && !from.ip().is_loopback() {
            log::warn!("gossip: refused {from}: not loopback, and no cluster key is set");
            continue;
        }
        let (slot, evicted) = HandshakeSlot::take(&handshaking);
        let node = node.clone();
        let slots = slots.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let deadline = node.cfg.timeout.min(HANDSHAKE_TIMEOUT);
            let conn = tokio::select! {
                c = Connection::accept(stream, &node.cfg.key, deadline) => c,
                _ = evicted.notified() => {
                    log::debug!("gossip: closed {from}: {MAX_HANDSHAKING} newer handshakes");
                    return;
                }
                _ = stop.changed() => return,
            };
            drop(slot);
            let mut conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    log::warn!("gossip: handshake with {from} failed: {e}");
                    return;
                }
            };
            let permit = tokio::select! {
                p = slots.acquire_owned() => p,
                _ = stop.changed() => return,
            };
            let Ok(_permit) = permit else {
                return;
            };
            tokio::select! {
                _ = inbound(&node, &mut conn, from) => {}
                _ = stop.changed() => {}
            }
        });
    }
}

async fn inbound(node: &Arc<Node>, conn: &mut Connection, from: SocketAddr) {
    let mut heard = None;
    let result =
        exchange::within(node.cfg.deadline, exchange::respond(node, conn, &mut heard)).await;
    let _ = node.finish_exchange(None, from, heard, result).await;
}
