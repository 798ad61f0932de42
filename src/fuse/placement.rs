//! Following the requester: on a saturated machine, the FUSE worker moves to the CPU of the
//! application it serves.
//!
//! When every CPU is busy, a FUSE round trip is fast or slow depending on where the
//! scheduler put the two threads. If the application and the worker share a CPU, a request
//! hands that CPU from one to the other. If they sit on different CPUs, each wake-up has to
//! preempt whatever busy task holds the other CPU, and a round trip costs three to four times
//! as much. On the 2-core VM this project is built on, first listings ran at 4,000/s against
//! 17,000/s. The scheduler keeps a pair where it first found it: in `sched:sched_wakeup`
//! traces, all of a run's wake-ups were same-CPU, or all were cross-CPU. So whether a run was
//! fast was a coin flip, for bindfs as for gitdb. FUSE over io_uring would settle this by
//! design (one queue per CPU, each request served on the CPU that sent it), but fuser 0.18
//! does not speak it.
//!
//! So, while the governor finds the machine saturated ([`super::busy::BusyPoll::holding_off`]),
//! a worker checks at most once per [`INTERVAL`] which CPU its requester last ran on. The
//! requester waits for the reply, so that is the CPU where it will wake. If that CPU is not
//! the worker's own, the worker narrows its affinity to it, which makes the kernel migrate it
//! at once, and then widens the affinity back to what it was. The scheduler stays free to
//! place the worker afterwards; the pair then stays together, as pairs do. With an idle CPU,
//! nothing moves: there the worker busy-polls on a CPU of its own, which is the fast path.
//!
//! A check costs an open and a read of `/proc/<tid>/stat`, a few µs, at most every 5 ms per
//! worker. `-o nofollow_cpu` turns this off. A worker confined to one CPU never moves.

use std::cell::Cell;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a worker checks its requester's CPU at most. A pair that the scheduler split
/// is slow for at most this long. Checking more often would only repeat a move that the
/// scheduler is about to undo.
pub const INTERVAL: Duration = Duration::from_millis(5);

/// Whether workers follow their requesters, and how often they moved.
#[derive(Debug)]
pub struct Placement {
    on: bool,
    interval: Duration,
    moves: AtomicU64,
}

thread_local! {
    /// This worker's last check. Each worker thread follows its own requesters.
    static LAST_CHECK: Cell<Option<Instant>> = const { Cell::new(None) };
}

impl Placement {
    pub fn new(on: bool) -> Placement {
        Placement {
            on,
            interval: INTERVAL,
            moves: AtomicU64::new(0),
        }
    }

    /// How many times a worker moved to its requester's CPU since the mount.
    pub fn moves(&self) -> u64 {
        self.moves.load(Ordering::Relaxed)
    }

    /// Called by a worker, on a saturated machine, for a request from thread `tid` (0: from
    /// no thread of this pid namespace, or from one to ignore).
    pub fn follow(&self, tid: u32) {
        if !self.on || tid == 0 {
            return;
        }
        let now = Instant::now();
        if LAST_CHECK
            .get()
            .is_some_and(|t| now.duration_since(t) < self.interval)
        {
            return;
        }
        LAST_CHECK.set(Some(now));
        let Some(theirs) = last_cpu_of(tid) else {
            return;
        };
        // SAFETY: no arguments; the vDSO's answer, or -1.
        let mine = unsafe { libc::sched_getcpu() };
        if usize::try_from(mine).is_ok_and(|mine| mine == theirs) {
            return;
        }
        match move_to(theirs) {
            Ok(true) => {
                self.moves.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(e) => log::debug!("following the requester to CPU {theirs}: {e}"),
        }
    }
}

/// Moves the calling thread to `cpu` if its affinity allows it, leaving the affinity as it
/// was. The current mask is read each time, so a later `taskset` of the daemon is respected.
fn move_to(cpu: usize) -> std::io::Result<bool> {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: an all-zero cpu_set_t is the empty set; the calls get properly sized sets of
    // the calling thread (0), and CPU_ISSET/CPU_SET check `cpu` against the set's size.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size, &mut allowed) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if cpu >= libc::CPU_SETSIZE as usize || !libc::CPU_ISSET(cpu, &allowed) {
            return Ok(false);
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        if libc::sched_setaffinity(0, size, &one) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::sched_setaffinity(0, size, &allowed) != 0 {
            // Left narrowed, the worker would stay on one CPU for the rest of its life.
            let e = std::io::Error::last_os_error();
            log::warn!("widening the FUSE worker's CPU affinity again: {e}");
            return Err(e);
        }
    }
    Ok(true)
}

/// The CPU that thread `tid` last ran on (field 39 of `/proc/<tid>/stat`), if it still
/// exists.
fn last_cpu_of(tid: u32) -> Option<usize> {
    let mut buf = [0u8; 1024];
    // One small allocation per check, at most every `INTERVAL`.
    let n = std::fs::File::open(format!("/proc/{tid}/stat"))
        .ok()?
        .read(&mut buf)
        .ok()?;
    processor_field(buf.get(..n)?)
}

/// Field 39 (`processor`) of a `/proc/<pid>/stat` line. The command name (field 2) is in
/// parentheses and may hold spaces and parentheses itself, so fields are counted from the
/// last `)`.
fn processor_field(stat: &[u8]) -> Option<usize> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 2..)?).ok()?;
    // After ") " comes field 3 (state).
    rest.split(' ').nth(39 - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus() -> Vec<usize> {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: a properly sized set of the calling thread.
        unsafe {
            let mut allowed: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(libc::sched_getaffinity(0, size, &mut allowed), 0);
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &allowed))
                .collect()
        }
    }

    fn pin(cpu: usize) {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: as above.
        unsafe {
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            assert_eq!(libc::sched_setaffinity(0, size, &one), 0);
        }
    }

    #[test]
    fn the_processor_field_is_counted_from_the_last_parenthesis() {
        let mut line = b"42 (a) b (c) R 1".to_vec();
        for f in 5..=38 {
            line.extend_from_slice(format!(" {f}").as_bytes());
        }
        line.extend_from_slice(b" 7 0 0\n");
        assert_eq!(processor_field(&line), Some(7));
        assert_eq!(processor_field(b"42 (short) R 1 2 3"), None);
        assert_eq!(processor_field(b"no parenthesis"), None);
    }

    #[test]
    fn a_worker_moves_to_its_requesters_cpu_and_keeps_its_affinity() {
        let allowed = cpus();
        if allowed.len() < 2 {
            return;
        }
        let (target, start) = (allowed[1], allowed[0]);
        // The requester: a thread pinned to `target`, blocked until the check is done.
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let requester = std::thread::spawn(move || {
            pin(target);
            // SAFETY: no arguments.
            let _ = tid_tx.send(unsafe { libc::gettid() } as u32);
            let _ = done_rx.recv();
        });
        let tid = tid_rx.recv().expect("requester tid");
        // Until the requester has run on `target` once, its stat may name another CPU.
        let deadline = Instant::now() + Duration::from_secs(10);
        while last_cpu_of(tid) != Some(target) {
            assert!(
                Instant::now() < deadline,
                "the requester never ran on {target}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // The worker: a thread that starts on another CPU, with every CPU allowed.
        let worker = std::thread::spawn(move || {
            let placement = Placement {
                interval: Duration::ZERO,
                ..Placement::new(true)
            };
            pin(start);
            let size = std::mem::size_of::<libc::cpu_set_t>();
            // SAFETY: a properly sized set of the calling thread.
            unsafe {
                let mut all: libc::cpu_set_t = std::mem::zeroed();
                for &c in &allowed {
                    libc::CPU_SET(c, &mut all);
                }
                assert_eq!(libc::sched_setaffinity(0, size, &all), 0);
            }
            // A busy machine may move the worker away again between the move and the check;
            // each try moves it back.
            let mut landed = false;
            for _ in 0..100 {
                placement.follow(tid);
                // SAFETY: no arguments.
                if unsafe { libc::sched_getcpu() } as usize == target {
                    landed = true;
                    break;
                }
            }
            (landed, placement.moves(), cpus())
        });
        let (landed, moves, after) = worker.join().expect("worker");
        let _ = done_tx.send(());
        requester.join().expect("requester");
        assert!(landed, "the worker never reached CPU {target}");
        assert!(moves >= 1);
        assert_eq!(after, cpus(), "the worker's affinity was not widened back");

        let off = Placement::new(false);
        off.follow(tid);
        off.follow(0);
        assert_eq!(off.moves(), 0);
    }

    #[test]
    fn a_thread_that_is_gone_is_not_followed() {
        let placement = Placement {
            interval: Duration::ZERO,
            ..Placement::new(true)
        };
        // Thread ids are below pid_max (at most 2^22).
        placement.follow(u32::MAX - 1);
        assert_eq!(placement.moves(), 0);
    }
}
