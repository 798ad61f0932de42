//! One way to run a background thread: named, stoppable at once, joined when its owner drops
//! it. Every background loop of the crate (the db's refresh and autocommit, the remote sync,
//! the mount's invalidation and busy-poll governor) is one [`Periodic`] instead of its own copy
//! of "a stop flag, a sleep in slices that looks at it, a handle joined by hand".
//!
//! The stop and the wake-ups go through a condvar, so a stop ends a wait of any length at once
//! (the old loops slept in 50 ms slices and looked at a flag) and a [`Waker`] can cut the wait
//! short for work that cannot wait for the next period (the remote sync after a commit).
//! Dropping the [`Periodic`] stops the thread and joins it, as mini-redis's `DbDropGuard` stops
//! its purge task: whoever owns the guard owns the thread's lifetime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a background thread is told: stop, or wake before its period is up.
#[derive(Default)]
pub struct Stop {
    /// Set once; read without the lock by loops that only look at it between steps.
    stopped: AtomicBool,
    /// Whether a wake-up came since the last wait (so one sent while the thread works is not
    /// lost). The mutex guards nothing else: it only pairs with the condvar.
    woken: Mutex<bool>,
    cv: Condvar,
}

impl Stop {
    /// Whether the owner asked the thread to stop.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// The flag itself, for a loop that polls an `AtomicBool` (the busy-poll governor).
    pub fn flag(&self) -> &AtomicBool {
        &self.stopped
    }

    /// Waits up to `d`, or until woken or stopped; true if stopped.
    pub fn wait(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        let mut woken = self.woken.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.is_stopped() {
                return true;
            }
            if *woken {
                *woken = false;
                return false;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            woken = self
                .cv
                .wait_timeout(woken, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn stop(&self) {
        // Under the lock, so a thread between its check and its wait cannot miss it.
        let _guard = self.woken.lock().unwrap_or_else(|p| p.into_inner());
        self.stopped.store(true, Ordering::Release);
        self.cv.notify_all();
    }

    fn wake(&self) {
        let mut woken = self.woken.lock().unwrap_or_else(|p| p.into_inner());
        *woken = true;
        self.cv.notify_all();
    }
}

/// Cuts a [`Periodic`]'s current wait short (cheap to clone; outlives the thread harmlessly).
#[derive(Clone)]
pub struct Waker(Arc<Stop>);

impl Waker {
    /// Wakes the thread; false once it was told to stop (a subscriber can then unsubscribe).
    pub fn wake(&self) -> bool {
        self.0.wake();
        !self.0.is_stopped()
    }

    /// Whether the thread was told to stop.
    pub fn is_stopped(&self) -> bool {
        self.0.is_stopped()
    }
}

/// A [`Periodic`] not started yet, whose [`Waker`] can be handed out first (to a subscriber
/// that must be in place before the thread's first round looks at the state).
pub struct Starting(Arc<Stop>);

impl Default for Starting {
    fn default() -> Self {
        Starting::new()
    }
}

impl Starting {
    pub fn new() -> Starting {
        Starting(Arc::new(Stop::default()))
    }

    pub fn waker(&self) -> Waker {
        Waker(self.0.clone())
    }

    /// Runs `body` on a thread named `name` (see [`Periodic::spawn`]).
    pub fn spawn(
        self,
        name: &str,
        body: impl FnOnce(&Stop) + Send + 'static,
    ) -> std::io::Result<Periodic> {
        let stop = self.0;
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || body(&stop))
        };
        match thread {
            Ok(thread) => Ok(Periodic {
                name: name.to_owned(),
                stop,
                thread: Some(thread),
            }),
            Err(e) => {
                // Wakers handed out say "stopped" from now on.
                stop.stop();
                Err(e)
            }
        }
    }
}

/// A named background thread, stopped and joined on drop.
pub struct Periodic {
    name: String,
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
}

impl Periodic {
    /// Runs `tick` every `interval` (the first after one interval) until stopped; a
    /// [`Waker`] makes the next tick come at once.
    pub fn every(
        name: &str,
        interval: Duration,
        mut tick: impl FnMut(&Stop) + Send + 'static,
    ) -> std::io::Result<Periodic> {
        Periodic::spawn(name, move |stop| {
            while !stop.wait(interval) {
                tick(stop);
            }
        })
    }

    /// Runs `body` once on a thread of its own; `body` returns when [`Stop::is_stopped`] (or
    /// when it has nothing more to do).
    pub fn spawn(
        name: &str,
        body: impl FnOnce(&Stop) + Send + 'static,
    ) -> std::io::Result<Periodic> {
        Starting::new().spawn(name, body)
    }

    /// A handle that wakes the thread.
    pub fn waker(&self) -> Waker {
        Waker(self.stop.clone())
    }

    /// Asks the thread to stop without waiting for it (to stop several, then join each).
    pub fn signal_stop(&self) {
        self.stop.stop();
    }

    /// Asks the thread to stop and leaves it: for a drop that must not wait (a thread that may
    /// be blocked on a kernel that is going away).
    pub fn detach(mut self) {
        self.stop.stop();
        self.thread.take();
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            log::error!("{}: the thread panicked", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn drop_stops_a_long_wait_at_once_and_joins() {
        let ticks = Arc::new(AtomicUsize::new(0));
        let t = {
            let ticks = ticks.clone();
            Periodic::every("test-periodic", Duration::from_secs(3600), move |_| {
                ticks.fetch_add(1, Ordering::SeqCst);
            })
            .expect("spawn")
        };
        let start = Instant::now();
        drop(t);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "drop waited out the period"
        );
        assert_eq!(ticks.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_wake_brings_the_next_tick_at_once_even_if_sent_while_busy() {
        let (tx, rx) = std::sync::mpsc::channel();
        let t = Periodic::every("test-periodic", Duration::from_secs(3600), move |_| {
            let _ = tx.send(());
        })
        .expect("spawn");
        let waker = t.waker();
        assert!(waker.wake());
        rx.recv_timeout(Duration::from_secs(10))
            .expect("woken tick");
        // Two wakes before the thread waits again are (at least) one more tick, not lost.
        waker.wake();
        waker.wake();
        rx.recv_timeout(Duration::from_secs(10))
            .expect("second tick");
        drop(t);
        assert!(!waker.wake(), "a waker outliving its thread says so");
    }

    #[test]
    fn ticks_come_every_interval() {
        let (tx, rx) = std::sync::mpsc::channel();
        let _t = Periodic::every("test-periodic", Duration::from_millis(10), move |_| {
            let _ = tx.send(Instant::now());
        })
        .expect("spawn");
        let a = rx.recv_timeout(Duration::from_secs(10)).expect("tick");
        let b = rx.recv_timeout(Duration::from_secs(10)).expect("tick");
        assert!(b.duration_since(a) >= Duration::from_millis(9));
    }
}
