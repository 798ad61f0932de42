//! News of changes: the [`HeadEvent`]s sent whenever the branch head moves or a rollback drops
//! changes, and the subscribers they go to (the mount's cache invalidation, the remote sync,
//! gossip). Apart because `subscribers` is the last lock in the lock order, taken alone and
//! only here.
//!
//! One news channel, offered in the form each kind of listener waits in:
//! - **plain threads**: [`GitDb::subscribe`] (a std channel of every event) and
//!   [`GitDb::subscribe_with`] (a callback on the thread that made the change, before that
//!   change returns: the mount queues its kernel-cache invalidation there, in order);
//! - **tokio tasks**, which must not block a runtime thread on a std channel nor need a bridge
//!   thread to forward one: [`GitDb::watch_head`], a `tokio::sync::watch` of the head and
//!   clock, for a task that only needs to know the head moved and to act on the latest one
//!   (gossip pushes news after every move). A watch, not a queue, because that listener wants
//!   the *state*, not the steps: moves that come while it is busy are one wake-up, never a
//!   backlog, and it costs one compare per move whether anyone listens or not. A task that needs
//!   every event with its changed paths takes [`GitDb::subscribe_async`], an unbounded
//!   per-subscriber tokio channel: unbounded as the std one is, since dropping or lagging
//!   (a `broadcast` channel's answer to a slow reader) would lose paths whose caches must be
//!   dropped; a listener that falls behind holds its own backlog and nobody else's.

use std::sync::MutexGuard;

use crate::db::{GitDb, VectorClock};
use crate::memory;
use crate::store::ObjectId;

/// The branch head moved from `old` to `new` (reported by [`GitDb::refresh`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadMove {
    pub old: Option<ObjectId>,
    pub new: Option<ObjectId>,
}

/// Why what readers see changed: one event kind for every road a change takes, its origin
/// spelled out. Only [`HeadOrigin::LocalCommit`] leaves what readers see as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadOrigin {
    /// A commit of this node's working layer: what readers see did not change.
    LocalCommit,
    /// A merge commit of ours and a peer's (or a remote's) head became the head.
    Merge,
    /// Our head was an ancestor of theirs: the branch moved forward to it.
    FastForward,
    /// Our head held beyond theirs only merges theirs also holds: theirs replaced it.
    Superseded,
    /// The ref was moved by someone else (stock git, a `gitdb` client writing the repository
    /// itself) and [`GitDb::refresh`] or a commit found and adopted it.
    External,
    /// A read-only handle followed its writer: the writer's head or working layer changed.
    FollowedWriter,
    /// The working layer changed through another client of this handle (the daemon's door):
    /// the head stayed.
    OtherClient,
    /// The working layer was dropped (`rollback`): the head stayed, the dropped keys changed.
    Rollback,
}

impl HeadOrigin {
    /// Whether the visible keys may have changed (every origin but a local commit).
    pub fn changes_what_readers_see(self) -> bool {
        self != HeadOrigin::LocalCommit
    }
}

/// Sent to subscribers whenever the branch head moves or a rollback drops changes: the one
/// news channel through which the mount (cache invalidation) and gossip learn of changes.
#[derive(Debug, Clone)]
pub struct HeadEvent {
    pub old: Option<ObjectId>,
    pub new: Option<ObjectId>,
    pub origin: HeadOrigin,
    /// Keys (tree paths) whose visible value may differ: between the old and the new head,
    /// or, for a rollback, the uncommitted changes it dropped.
    pub changed: Vec<String>,
}

/// What [`GitDb::watch_head`] shows: the committed head this node works on, and its vector
/// clock (which moves only with the head).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadState {
    pub head: Option<ObjectId>,
    pub clock: VectorClock,
}

/// A receiver of [`HeadEvent`]s.
pub(super) enum Subscriber {
    Channel(std::sync::mpsc::Sender<HeadEvent>),
    /// For a tokio task (see the module docs).
    Async(tokio::sync::mpsc::UnboundedSender<HeadEvent>),
    /// Called on the thread that made the change, before that call (commit, rollback, ...)
    /// returns: whoever must act before the change is acknowledged (the mount's kernel-cache
    /// invalidation) queues its work here, in order. Must not block, take locks of its own
    /// callers or call back into the db. Returns false once it wants no more news.
    Callback(Box<dyn Fn(&HeadEvent) -> bool + Send>),
}

impl GitDb {
    /// Sends `event` to every subscriber, unless nothing changed.
    pub(super) fn announce(&self, event: HeadEvent) {
        if event.old == event.new && event.changed.is_empty() {
            return;
        }
        self.send(event);
    }

    /// Tells subscribers that the working layer's `keys` (tree paths) changed through another
    /// client of this handle than the subscriber itself (the daemon's door, see
    /// [`crate::door`]): the head stays, so the event is `HeadOrigin::OtherClient` with
    /// `old == new` and the mount drops its kernel caches of exactly those keys.
    pub fn announce_changed(&self, keys: Vec<String>) {
        let head = self.head();
        self.announce(HeadEvent {
            old: head,
            new: head,
            origin: HeadOrigin::OtherClient,
            changed: keys,
        });
    }

    /// Receives a [`HeadEvent`] each time the head moves or a rollback drops changes.
    pub fn subscribe(&self) -> std::sync::mpsc::Receiver<HeadEvent> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.lock_subscribers().push(Subscriber::Channel(tx));
        rx
    }

    /// Receives every [`HeadEvent`] in a tokio task, without a bridge thread (see the module
    /// docs for when [`GitDb::watch_head`] is the better fit).
    pub fn subscribe_async(&self) -> tokio::sync::mpsc::UnboundedReceiver<HeadEvent> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.lock_subscribers().push(Subscriber::Async(tx));
        rx
    }

    /// The head and clock, as a `tokio::sync::watch` a task can await (`changed().await`):
    /// it always holds the latest, and moves that come while the task is busy wake it once.
    pub fn watch_head(&self) -> tokio::sync::watch::Receiver<HeadState> {
        let tx = self
            .head_watch
            .get_or_init(|| tokio::sync::watch::Sender::new(self.head_state()));
        // A move between reading the state above and the sender being in place was sent to
        // no watch: look again now that it is.
        self.update_head_watch();
        tx.subscribe()
    }

    fn head_state(&self) -> HeadState {
        let st = self.read_state();
        HeadState {
            head: st.head,
            clock: st.clock.clone(),
        }
    }

    /// Puts the current head and clock in the watch, if anyone ever asked for one; called
    /// after every change is in place, with none of the db's locks held.
    fn update_head_watch(&self) {
        if let Some(tx) = self.head_watch.get() {
            let now = self.head_state();
            tx.send_if_modified(|seen| {
                let moved = *seen != now;
                if moved {
                    *seen = now;
                }
                moved
            });
        }
    }

    /// Calls `f` with every [`HeadEvent`], on the thread that made the change and before the
    /// call that made it returns (see [`Subscriber::Callback`]).
    pub fn subscribe_with(&self, f: impl Fn(&HeadEvent) -> bool + Send + 'static) {
        self.lock_subscribers()
            .push(Subscriber::Callback(Box::new(f)));
    }

    fn lock_subscribers(&self) -> MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn send(&self, event: HeadEvent) {
        self.update_head_watch();
        self.lock_subscribers().retain(|sub| match sub {
            Subscriber::Channel(tx) => tx.send(event.clone()).is_ok(),
            Subscriber::Async(tx) => tx.send(event.clone()).is_ok(),
            Subscriber::Callback(f) => f(&event),
        });
    }

    pub(super) fn publish(
        &self,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
        old_tree: ObjectId,
        new_tree: ObjectId,
        origin: HeadOrigin,
    ) {
        if old == new {
            return;
        }
        let subscribed = !self.lock_subscribers().is_empty();
        let changed: Vec<String> = if subscribed {
            match self.store.diff_trees(old_tree, new_tree) {
                Ok(changes) => changes.into_iter().map(|c| c.path).collect(),
                Err(e) => {
                    log::warn!("cannot diff {old_tree}..{new_tree} for subscribers: {e}");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        // What only the old head needed leaves the caches, and the memory it and the commit's
        // temporaries took goes back to the system (see [`memory`]).
        self.store.forget_old_head(old_tree, new_tree, &changed);
        memory::release_freed_memory();
        if !subscribed {
            self.update_head_watch();
            return;
        }
        self.send(HeadEvent {
            old,
            new,
            origin,
            changed,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::db::{GitDb, HeadOrigin, NodeId, Options};

    fn open(dir: &std::path::Path) -> GitDb {
        GitDb::open(
            dir.join("repo.git"),
            NodeId::new("n1").expect("node id"),
            Options::default(),
        )
        .expect("open")
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_task_awaits_head_moves_and_a_burst_is_one_wake_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        let mut rx = db.watch_head();
        assert_eq!(rx.borrow().head, None);
        assert!(!rx.has_changed().expect("open"), "nothing moved yet");
        for i in 0..3 {
            db.set("k", format!("{i}").as_bytes()).expect("set");
            db.commit("c", 1_000 + i).expect("commit");
        }
        runtime().block_on(async {
            tokio::time::timeout(Duration::from_secs(10), rx.changed())
                .await
                .expect("woken in time")
                .expect("the db still lives");
        });
        let seen = rx.borrow_and_update().clone();
        assert_eq!(seen.head, db.head(), "the latest head, not the first move");
        assert_eq!(seen.clock, db.clock());
        assert!(
            !rx.has_changed().expect("open"),
            "three moves were one wake-up"
        );
        // A rollback leaves the head: no wake-up.
        db.set("x", b"1").expect("set");
        db.rollback().expect("rollback");
        assert!(!rx.has_changed().expect("open"));
    }

    #[test]
    fn an_async_subscriber_gets_every_event_with_its_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        let mut rx = db.subscribe_async();
        db.set("a/b", b"1").expect("set");
        db.commit("c", 1_000).expect("commit");
        db.set("x", b"2").expect("set");
        db.rollback().expect("rollback");
        let (first, second) = runtime().block_on(async {
            let mut next = async || {
                tokio::time::timeout(Duration::from_secs(10), rx.recv())
                    .await
                    .expect("in time")
                    .expect("an event")
            };
            (next().await, next().await)
        });
        assert_eq!(first.origin, HeadOrigin::LocalCommit);
        assert_eq!(first.changed, vec!["a/b".to_owned()]);
        assert_eq!(second.origin, HeadOrigin::Rollback);
        assert_eq!(second.changed, vec!["x".to_owned()]);
    }
}
