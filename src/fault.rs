//! Fault injection for tests and fuzzing: makes the journal's and the store's writes fail with
//! an I/O error after a number of writes, on the thread that asked for it.
//!
//! Why it is compiled in always instead of behind a cargo feature: the stable test suite
//! (`cargo test`, `scripts/test.sh`) and the cargo-fuzz crate both need it, and a feature would
//! mean a second build of the crate with it on, or tests that pass only with the right flags.
//! What it costs when off is one relaxed atomic load (a plain `mov` on x86) per write system
//! call it guards (each of which costs microseconds), and nothing else: the thread-local plan
//! is looked at only while some thread has one armed.
//!
//! The plan is per thread, so tests in the same process that did not arm one never see an
//! injected error (tests run in parallel threads). Writes made on other threads (none of the
//! guarded ones are, today: journal appends, syncs, resets and rewrites, loose-object, pack
//! and ref writes and object fsyncs all run on the caller's thread) are never failed.
//!
//! The guarded sites ("writes") are, each a single call at the point of the system call:
//! - the journal: an append's write (torn: half its bytes reach the file, then the error), its
//!   fsync, a reset's truncation, a rewrite's temp file;
//! - the store: writing a loose object or a pack, moving a ref, fsyncing objects or refs.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The message of every injected error (so a test tells it from a real one).
pub const INJECTED: &str = "injected I/O fault";

/// How many threads have a plan armed: while 0, [`check`] is one relaxed load.
static ARMED: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Writes left to succeed before the failing starts.
    left: u64,
    /// Once failing, whether every later write fails too (a disk that went away) or only the
    /// first (a transient error).
    sticky: bool,
    failed: u64,
}

thread_local! {
    static PLAN: Cell<Option<Plan>> = const { Cell::new(None) };
}

/// Whether `e` is an error [`check`] injected.
pub fn is_injected(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Other && e.to_string().contains(INJECTED)
}

fn injected(site: &str) -> std::io::Error {
    std::io::Error::other(format!("{INJECTED} ({site})"))
}

/// Fails the current thread's writes after `after` more have succeeded, until the guard is
/// dropped. `sticky`: every write from then on fails, else only the first.
pub fn arm(after: u64, sticky: bool) -> Armed {
    let had = PLAN.with(|p| {
        p.replace(Some(Plan {
            left: after,
            sticky,
            failed: 0,
        }))
    });
    if had.is_none() {
        ARMED.fetch_add(1, Ordering::Relaxed);
    }
    Armed {
        _not_send: std::marker::PhantomData,
    }
}

/// Disarms the thread's plan on drop.
pub struct Armed {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Armed {
    /// How many writes have been failed so far.
    pub fn failed(&self) -> u64 {
        PLAN.with(|p| p.get().map_or(0, |p| p.failed))
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        if PLAN.with(|p| p.take()).is_some() {
            ARMED.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The guard at a write: `Err` when the thread's plan says this write fails.
#[inline]
pub fn check(site: &'static str) -> std::io::Result<()> {
    if ARMED.load(Ordering::Relaxed) == 0 {
        return Ok(());
    }
    slow(site)
}

#[cold]
fn slow(site: &'static str) -> std::io::Result<()> {
    PLAN.with(|p| {
        let Some(mut plan) = p.get() else {
            return Ok(());
        };
        let fail = if plan.left > 0 {
            plan.left -= 1;
            false
        } else {
            plan.sticky || plan.failed == 0
        };
        if fail {
            plan.failed += 1;
        }
        p.set(Some(plan));
        if fail { Err(injected(site)) } else { Ok(()) }
    })
}

/// `file.write_all(buf)` behind [`check`]; an injected failure is a torn write: the first half
/// of `buf` reaches the file, then the error, as when a disk fills mid-write.
#[inline]
pub fn write_all(
    file: &mut impl std::io::Write,
    buf: &[u8],
    site: &'static str,
) -> std::io::Result<()> {
    if let Err(e) = check(site) {
        let _ = file.write_all(&buf[..buf.len() / 2]);
        return Err(e);
    }
    file.write_all(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_fails_after_n_writes_on_its_thread_only() {
        assert!(check("x").is_ok());
        let g = arm(2, false);
        assert!(check("x").is_ok() && check("x").is_ok());
        let e = check("x").unwrap_err();
        assert!(is_injected(&e));
        assert!(check("x").is_ok(), "not sticky: only the first fails");
        std::thread::spawn(|| assert!(check("x").is_ok()))
            .join()
            .unwrap();
        assert_eq!(g.failed(), 1);
        drop(g);
        let _g = arm(0, true);
        assert!(check("x").is_err() && check("x").is_err());
    }
}
