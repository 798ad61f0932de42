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
pub(super) mod tests {
    use super::*;

    /// The CPUs the calling thread may run on.
    pub(in crate::fuse) fn cpus() -> Vec<usize> {
        let allowed = crate::fuse::busy::allowed_cpus();
        (0..allowed.len()).filter(|&c| allowed[c]).collect()
    }

    /// Confines the calling thread to `cpus`.
    pub(in crate::fuse) fn set_cpus(cpus: &[usize]) {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: a properly sized set of the calling thread; CPU_SET of allowed CPUs.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &c in cpus {
                libc::CPU_SET(c, &mut set);
            }
            assert_eq!(libc::sched_setaffinity(0, size, &set), 0);
        }
    }

    fn current_cpu() -> usize {
        // SAFETY: no arguments.
        unsafe { libc::sched_getcpu() as usize }
    }

    /// A requester: a thread pinned to one CPU, blocked until dropped.
    pub(in crate::fuse) struct Requester {
        pub tid: u32,
        done: Option<std::sync::mpsc::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Requester {
        pub(in crate::fuse) fn on(cpu: usize) -> Requester {
            let (tid_tx, tid_rx) = std::sync::mpsc::channel();
            let (done, done_rx) = std::sync::mpsc::channel::<()>();
            let thread = std::thread::spawn(move || {
                set_cpus(&[cpu]);
                // SAFETY: no arguments.
                let _ = tid_tx.send(unsafe { libc::gettid() } as u32);
                let _ = done_rx.recv();
            });
            let tid = tid_rx.recv().expect("requester tid");
            // Until the requester has run on `cpu` once, its stat may name another CPU.
            let deadline = Instant::now() + Duration::from_secs(10);
            while last_cpu_of(tid) != Some(cpu) {
                assert!(
                    Instant::now() < deadline,
                    "the requester never ran on {cpu}"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            Requester {
                tid,
                done: Some(done),
                thread: Some(thread),
            }
        }
    }

    impl Drop for Requester {
        fn drop(&mut self) {
            drop(self.done.take());
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Runs `f` on a new thread that starts on `start` and may then use every allowed CPU.
    pub(in crate::fuse) fn on_worker<T: Send + 'static>(
        start: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        std::thread::spawn(move || {
            let all = cpus();
            set_cpus(&[start]);
            set_cpus(&all);
            f()
        })
        .join()
        .expect("worker thread")
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
        let requester = Requester::on(target);
        let tid = requester.tid;
        let (landed, moves, after) = on_worker(start, move || {
            let placement = Placement {
                interval: Duration::ZERO,
                ..Placement::new(true)
            };
            // A busy machine may move the worker away again between the move and the check;
            // each try moves it back.
            let mut landed = false;
            for _ in 0..100 {
                placement.follow(tid);
                if current_cpu() == target {
                    landed = true;
                    break;
                }
            }
            (landed, placement.moves(), cpus())
        });
        assert!(landed, "the worker never reached CPU {target}");
        assert!(moves >= 1);
        assert_eq!(after, allowed, "the worker's affinity was not widened back");

        let off = Placement::new(false);
        off.follow(tid);
        off.follow(0);
        assert_eq!(off.moves(), 0);
    }

    /// A worker confined to one CPU (`taskset` of the daemon) stays there: its requester's
    /// CPU is outside its mask.
    #[test]
    fn a_worker_confined_to_one_cpu_never_moves() {
        let allowed = cpus();
        if allowed.len() < 2 {
            return;
        }
        let (first, requester) = (allowed[0], Requester::on(allowed[1]));
        let tid = requester.tid;
        let (moves, cpu, after) = std::thread::spawn(move || {
            set_cpus(&[first]);
            let placement = Placement {
                interval: Duration::ZERO,
                ..Placement::new(true)
            };
            for _ in 0..20 {
                placement.follow(tid);
            }
            (placement.moves(), current_cpu(), cpus())
        })
        .join()
        .expect("worker thread");
        assert_eq!(moves, 0);
        assert_eq!(cpu, first);
        assert_eq!(after, vec![first]);
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
