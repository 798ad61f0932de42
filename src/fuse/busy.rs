//! Busy polling of the FUSE device while requests keep coming.
//!
//! A FUSE round trip on a small virtual machine costs wake-ups, not work. The application's
//! request wakes the daemon's worker sleeping in `read(2)` on `/dev/fuse`, and the reply wakes
//! the application. When the two run on different CPUs (the scheduler's choice whenever a CPU
//! is idle), each wake-up of a halted virtual CPU is an inter-processor interrupt and a VM
//! exit. On the 2-core VM this project is built on, the daemon spent 62% of its time in those
//! two wake-ups (perf), and a round trip cost 35–45 µs against 10 µs when both sides share a
//! CPU.
//!
//! While requests arrive less than a `period` apart, the worker reads the device with
//! `O_NONBLOCK`: it never sleeps, so a request reaches it without a wake-up and only the
//! reply's wake-up remains. The governor thread ([`BusyPoll::run`]) turns polling off after a
//! whole period with no request, and the worker blocks again. An idle mount therefore costs no
//! CPU. A busy one spends up to one core on its worker to roughly halve its latency, the trade
//! that network stacks make with `busy_poll` and io_uring with `SQPOLL`. `-o busy_poll=0`
//! turns it off.
//!
//! Polling takes a CPU that something else might want. A daemon that may use only one CPU
//! never polls (see `background::mount`), and while polling the governor watches the
//! machine's idle time: when a whole check window passes with the CPUs (next to) never idle,
//! other work is queuing for the CPU the worker spins on, so polling stops and stays off for
//! a while (`held_off` in `status`).
//!
//! The mechanism fits fuser's loop as it is: fuser retries a read that fails with `EAGAIN`,
//! and `O_NONBLOCK` is a flag of the device's open file description. Flipping it on a
//! duplicate of the session's descriptor therefore switches the worker between polling and
//! sleeping, with no change to the loop.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long the governor watches the machine's idle time before judging it.
const CHECK_WINDOW: Duration = Duration::from_millis(100);
/// Below this share of idle CPU time in a window, polling is taking a CPU others want.
const BUSY_MACHINE_IDLE: f64 = 0.03;
/// How long polling stays off after that, doubled for each window in a row that finds the
/// machine busy again (a saturated machine is probed ever more rarely), up to `HOLD_OFF_MAX`.
const HOLD_OFF: Duration = Duration::from_secs(1);
const HOLD_OFF_MAX: Duration = Duration::from_secs(32);

/// The switch between a polling and a sleeping worker, and what `status` reports of it.
pub struct BusyPoll {
    /// A duplicate of the session's `/dev/fuse` descriptor, sharing its file status flags.
    dev: OwnedFd,
    period: Duration,
    /// Requests seen, compared across a period by the governor.
    requests: AtomicU64,
    /// Whether `O_NONBLOCK` is set. Changed only under `switch`, read without it on the
    /// request path.
    polling: AtomicBool,
    /// Serializes turning polling on (request path) and off (governor). Leaf lock.
    switch: Mutex<()>,
    /// Signalled when polling turns on, so the governor starts timing periods.
    started: Condvar,
    /// Times polling turned on, for `status`.
    episodes: AtomicU64,
    /// Times polling stopped because the machine had no idle CPU, for `status`.
    held_off: AtomicU64,
    /// Polling does not start before this many ns after `origin`.
    held_until_ns: AtomicU64,
    origin: Instant,
    /// Whether the governor watches the machine's idle time (off only in unit tests, which
    /// must not depend on the load of the machine running them).
    watch_machine: bool,
}

/// What `status` shows.
#[derive(Debug, Default, serde::Serialize)]
pub struct Snapshot {
    /// Polling goes on while requests come less than this many µs apart (0: never polls).
    pub period_us: u64,
    /// How many times polling turned on since the mount.
    pub episodes: u64,
    /// How many times it stopped early because no CPU was idle.
    pub held_off: u64,
    /// Whether it is held off now (the attribute warmer rests meanwhile).
    pub holding_off: bool,
}

impl BusyPoll {
    /// Polling for the session whose device descriptor is `dev`.
    pub fn new(dev: BorrowedFd<'_>, period: Duration) -> io::Result<BusyPoll> {
        Ok(BusyPoll {
            dev: dev.try_clone_to_owned()?,
            period,
            requests: AtomicU64::new(0),
            polling: AtomicBool::new(false),
            switch: Mutex::new(()),
            started: Condvar::new(),
            episodes: AtomicU64::new(0),
            held_off: AtomicU64::new(0),
            held_until_ns: AtomicU64::new(0),
            origin: Instant::now(),
            watch_machine: true,
        })
    }

    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Called at the start of every request: a relaxed increment and a load, except when the
    /// worker was sleeping.
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !self.polling.load(Ordering::Relaxed) {
            self.start();
        }
    }

    #[cold]
    fn start(&self) {
        if self.now_ns() < self.held_until_ns.load(Ordering::Relaxed) {
            return;
        }
        let _switch = self.switch.lock().unwrap_or_else(|p| p.into_inner());
        if self.polling.load(Ordering::Relaxed) {
            return;
        }
        match set_nonblocking(&self.dev, true) {
            Ok(()) => {
                self.polling.store(true, Ordering::Relaxed);
                self.episodes.fetch_add(1, Ordering::Relaxed);
                self.started.notify_one();
            }
            Err(e) => log::debug!("busy poll: setting O_NONBLOCK: {e}"),
        }
    }

    fn stop_polling(&self) {
        let _switch = self.switch.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = set_nonblocking(&self.dev, false) {
            // Left on, the worker would spin until the next period tries again.
            log::warn!("busy poll: clearing O_NONBLOCK: {e}");
            return;
        }
        self.polling.store(false, Ordering::Relaxed);
    }

    /// The governor: waits for polling to start, then ends it after a period without
    /// requests. Returns (with polling off) once `stop` is set.
    pub fn run(&self, stop: &AtomicBool) {
        let mut seen = self.requests.load(Ordering::Relaxed);
        let mut window: Option<(Instant, CpuTimes)> = None;
        let mut hold = HOLD_OFF;
        while !stop.load(Ordering::Relaxed) {
            {
                let mut switch = self.switch.lock().unwrap_or_else(|p| p.into_inner());
                while !self.polling.load(Ordering::Relaxed) {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    switch = self
                        .started
                        .wait_timeout(switch, Duration::from_millis(200))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
            std::thread::sleep(self.period);
            let now = self.requests.load(Ordering::Relaxed);
            if now == seen {
                self.stop_polling();
            }
            seen = now;
            // Windows span short polling episodes and the gaps between them (an application
            // that computes between bursts polls in many short episodes); one that began long
            // before this episode says little about now and is only restarted.
            match window {
                _ if !self.watch_machine => {}
                None => window = CpuTimes::read().map(|t| (Instant::now(), t)),
                Some((since, before)) if since.elapsed() >= CHECK_WINDOW => {
                    let after = CpuTimes::read();
                    if since.elapsed() <= 4 * CHECK_WINDOW
                        && let Some(after) = after
                    {
                        if after.idle_share_since(&before) < BUSY_MACHINE_IDLE {
                            self.hold_off(hold);
                            hold = (hold * 2).min(HOLD_OFF_MAX);
                        } else {
                            hold = HOLD_OFF;
                        }
                    }
                    window = after.map(|t| (Instant::now(), t));
                }
                Some(_) => {}
            }
        }
        self.stop_polling();
    }

    /// No CPU was idle over a whole window: stop polling and keep it off for `hold`.
    fn hold_off(&self, hold: Duration) {
        let until = self.now_ns() + hold.as_nanos() as u64;
        self.held_until_ns.store(until, Ordering::Relaxed);
        self.held_off.fetch_add(1, Ordering::Relaxed);
        self.stop_polling();
        log::debug!("busy poll: no idle CPU; off for {hold:?}");
    }

    /// Whether polling is held off now, i.e. the governor found no CPU idle within the last
    /// hold. Speculative work waits meanwhile too: on a saturated machine it takes CPU from
    /// the requests applications wait for (see the attribute warmer in `background`).
    pub fn holding_off(&self) -> bool {
        self.now_ns() < self.held_until_ns.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            period_us: self.period.as_micros() as u64,
            episodes: self.episodes.load(Ordering::Relaxed),
            held_off: self.held_off.load(Ordering::Relaxed),
            holding_off: self.holding_off(),
        }
    }
}

/// The machine's CPU time so far, in clock ticks, from the `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy)]
struct CpuTimes {
    total: u64,
    idle: u64,
}

impl CpuTimes {
    fn read() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        CpuTimes::parse(stat.lines().next()?)
    }

    /// `cpu  user nice system idle iowait irq softirq steal guest guest_nice`: guest time is
    /// already counted in user time, and waiting for I/O leaves the CPU free.
    fn parse(line: &str) -> Option<CpuTimes> {
        let mut fields = line.strip_prefix("cpu ")?.split_whitespace();
        let ticks: Vec<u64> = fields
            .by_ref()
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        (ticks.len() == 8).then(|| CpuTimes {
            total: ticks.iter().sum(),
            idle: ticks[3] + ticks[4],
        })
    }

    fn idle_share_since(&self, before: &CpuTimes) -> f64 {
        let total = self.total.saturating_sub(before.total);
        if total == 0 {
            return 1.0;
        }
        self.idle.saturating_sub(before.idle) as f64 / total as f64
    }
}

fn set_nonblocking(fd: &OwnedFd, on: bool) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with flag arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn a_hold_off_keeps_polling_off_until_it_ends() {
        let (reader, _writer) = std::io::pipe().expect("pipe");
        let poll = BusyPoll::new(reader.as_fd(), Duration::from_millis(100)).expect("busy poll");
        let held = Instant::now();
        assert!(!poll.holding_off());
        poll.hold_off(Duration::from_secs(1));
        let until = held + Duration::from_millis(500);
        while Instant::now() < until {
            poll.request();
            assert!(!nonblocking(&reader), "polling started during a hold-off");
            assert!(poll.holding_off());
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(
            (held + Duration::from_millis(1100)).saturating_duration_since(Instant::now()),
        );
        assert!(!poll.holding_off());
        poll.request();
        assert!(
            nonblocking(&reader),
            "polling did not resume after the hold-off"
        );
        assert_eq!(poll.snapshot().held_off, 1);
    }

    #[test]
    fn idle_share_from_proc_stat() {
        let before = CpuTimes::parse("cpu  100 0 50 800 50 0 0 0 0 0").expect("parse");
        let after = CpuTimes::parse("cpu  190 0 60 800 50 0 0 0 0 0").expect("parse");
        assert_eq!(after.idle_share_since(&before), 0.0);
        let after = CpuTimes::parse("cpu  150 0 50 840 60 0 0 0 0 0").expect("parse");
        assert_eq!(after.idle_share_since(&before), 0.5);
        assert!(CpuTimes::parse("cpu0 1 2 3 4 5 6 7 8").is_none());
        assert!(CpuTimes::parse("cpu  1 2 3").is_none());
        assert!(CpuTimes::read().is_some(), "/proc/stat on Linux");
    }

    fn nonblocking(fd: &impl AsRawFd) -> bool {
        // SAFETY: F_GETFL on a live descriptor.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) & libc::O_NONBLOCK != 0 }
    }

    /// A request turns polling on for the shared open file description, and a quiet period
    /// turns it off again; stopping the governor leaves it off.
    #[test]
    fn polls_while_requests_come_and_stops_when_quiet() {
        let (reader, _writer) = std::io::pipe().expect("pipe");
        let poll = Arc::new(BusyPoll {
            watch_machine: false,
            ..BusyPoll::new(reader.as_fd(), Duration::from_millis(100)).expect("busy poll")
        });
        let stop = Arc::new(AtomicBool::new(false));
        let governor = {
            let (poll, stop) = (poll.clone(), stop.clone());
            std::thread::spawn(move || poll.run(&stop))
        };
        assert!(!nonblocking(&reader));
        poll.request();
        assert!(nonblocking(&reader), "a request starts polling");
        // Requests closer than the period keep it on (over three periods).
        let busy_until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < busy_until {
            poll.request();
            assert!(
                nonblocking(&reader),
                "polling stopped while requests kept coming"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while nonblocking(&reader) {
            assert!(Instant::now() < deadline, "polling never stopped");
            std::thread::sleep(Duration::from_millis(1));
        }
        poll.request();
        assert!(nonblocking(&reader));
        assert_eq!(poll.snapshot().episodes, 2);
        stop.store(true, Ordering::Relaxed);
        governor.join().expect("governor");
        assert!(
            !nonblocking(&reader),
            "stopping leaves the descriptor blocking"
        );
    }
}
