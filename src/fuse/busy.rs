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
//! other work is queuing for the CPU the worker spins on, so polling stops and is held off
//! (`held_off` in `status`). The hold lasts as long as the machine stays saturated, judged
//! from windows in which the worker sleeps: a probe by polling again would itself take the
//! CPU for a window, and on a 2-core VM such probes every few seconds were what kept the
//! small-file phases below a plain FUSE mount's.
//!
//! The same governor also tells the rest of the mount whether the machine is saturated
//! ([`BusyPoll::holding_off`]): speculative work (the attribute warmer's stat, the page-cache
//! prefill after a write) rests meanwhile, since on a saturated CPU it is paid for by the
//! requests applications wait for. It does so even where polling is off (`-o busy_poll=0`,
//! or one CPU): the governor then only watches, in windows of its own while requests come.
//! The machine is the CPUs this process may run on (its affinity mask), not every CPU: a
//! daemon confined to a busy CPU beside an idle one is saturated.
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

use super::placement::Placement;

/// How long the governor watches the machine's idle time before judging it.
const CHECK_WINDOW: Duration = Duration::from_millis(100);
/// Below this share of idle CPU time in a window, polling is taking a CPU others want.
const BUSY_MACHINE_IDLE: f64 = 0.03;
/// How long polling stays off after that, renewed while windows taken during the hold (the
/// worker sleeping) still find the machine saturated.
const HOLD_OFF: Duration = Duration::from_secs(1);
/// How often the sleeping governor wakes: to see `stop`, and to judge a hold.
const GOVERNOR_NAP: Duration = Duration::from_millis(200);

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
    /// Whether the governor watches the machine's idle time (off only in tests, which must
    /// not depend on the load of the machine running them: unit tests, and mount tests of
    /// the speculative work through `GITDB_TEST_IGNORE_SATURATION=1` in debug builds).
    watch_machine: bool,
    /// Whether polling is on at all; off, `polling` means "requests are coming" and the
    /// descriptor stays blocking (the governor only watches the machine).
    polls: bool,
    /// Where the machine's CPU times come from: `/proc/stat` for the CPUs of `cpus`, or a
    /// test's machine.
    machine: fn(&[bool]) -> Option<CpuTimes>,
    /// The CPUs this process may run on (index: CPU number), read once at the start.
    cpus: Vec<bool>,
    /// How long one hold lasts (`HOLD_OFF`; shorter in tests).
    hold: Duration,
    /// While the machine is saturated, workers move to their requesters' CPUs.
    placement: Placement,
}

/// What `status` shows.
#[derive(Debug, Default, serde::Serialize)]
pub struct Snapshot {
    /// Polling goes on while requests come less than this many µs apart (0: never polls).
    pub period_us: u64,
    /// How many times polling turned on since the mount.
    pub episodes: u64,
    /// How many times the CPUs this daemon may use were found saturated (a hold began),
    /// also when polling is off.
    pub held_off: u64,
    /// Whether it is held off now (the page-cache prefill and the attribute warmer rest
    /// meanwhile).
    pub holding_off: bool,
    /// How many times a worker moved to the CPU of the application it served, on a
    /// saturated machine (see [`super::placement`]).
    pub worker_moves: u64,
}

impl BusyPoll {
    /// Polling for the session whose device descriptor is `dev`, while requests come less
    /// than `period` apart; a zero `period` only watches the machine.
    pub fn new(dev: BorrowedFd<'_>, period: Duration) -> io::Result<BusyPoll> {
        Ok(BusyPoll {
            dev: dev.try_clone_to_owned()?,
            polls: !period.is_zero(),
            period: if period.is_zero() {
                CHECK_WINDOW
            } else {
                period
            },
            cpus: allowed_cpus(),
            requests: AtomicU64::new(0),
            polling: AtomicBool::new(false),
            switch: Mutex::new(()),
            started: Condvar::new(),
            episodes: AtomicU64::new(0),
            held_off: AtomicU64::new(0),
            held_until_ns: AtomicU64::new(0),
            origin: Instant::now(),
            // Tests of the speculative work itself (the prefill, the warmer) run beside the
            // suite's busy loops and must not see it rest.
            watch_machine: !super::background::test_flag("GITDB_TEST_IGNORE_SATURATION"),
            machine: CpuTimes::read,
            hold: HOLD_OFF,
            placement: Placement::new(true),
        })
    }

    /// A switch that found the machine saturated and holds polling off for a minute, for the
    /// tests of what a hold changes.
    #[cfg(test)]
    pub(super) fn saturated(dev: BorrowedFd<'_>) -> BusyPoll {
        let poll = BusyPoll {
            hold: Duration::from_secs(60),
            ..BusyPoll::new(dev, Duration::from_millis(100)).expect("busy poll")
        };
        poll.hold_off();
        poll
    }

    /// Whether workers follow their requesters' CPUs on a saturated machine (on unless
    /// `-o nofollow_cpu`).
    pub fn following(mut self, on: bool) -> BusyPoll {
        self.placement = Placement::new(on);
        self
    }

    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Called at the start of every request from thread `tid` (0: one not to follow): a
    /// relaxed increment and a load, except when the worker was sleeping; on a saturated
    /// machine, the worker may move to its requester's CPU.
    pub fn request(&self, tid: u32) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !self.polling.load(Ordering::Relaxed) {
            self.start(tid);
        }
    }

    /// A request found the worker not polling: polling (or watching) starts, unless the
    /// machine is saturated, when instead the worker may follow its requester (polling is
    /// always off during a hold, so every request of a hold comes here).
    #[cold]
    fn start(&self, tid: u32) {
        if self.now_ns() < self.held_until_ns.load(Ordering::Relaxed) {
            self.placement.follow(tid);
            return;
        }
        let _switch = self.switch.lock().unwrap_or_else(|p| p.into_inner());
        if self.polling.load(Ordering::Relaxed) {
            return;
        }
        if !self.polls {
            self.polling.store(true, Ordering::Relaxed);
            self.started.notify_one();
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
        if self.polls
            && let Err(e) = set_nonblocking(&self.dev, false)
        {
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
        // The window of a hold in force, taken while the worker sleeps.
        let mut held: Option<(Instant, CpuTimes)> = None;
        while !stop.load(Ordering::Relaxed) {
            {
                let mut switch = self.switch.lock().unwrap_or_else(|p| p.into_inner());
                while !self.polling.load(Ordering::Relaxed) {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    switch = self
                        .started
                        .wait_timeout(switch, GOVERNOR_NAP)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    if let Some((since, before)) = held
                        && since.elapsed() >= CHECK_WINDOW
                    {
                        // `/proc/stat` is read without the switch, which a request may want.
                        drop(switch);
                        held = self.judge_hold(before);
                        switch = self.switch.lock().unwrap_or_else(|p| p.into_inner());
                    }
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
                None => window = (self.machine)(&self.cpus).map(|t| (Instant::now(), t)),
                Some((since, before)) if since.elapsed() >= CHECK_WINDOW => {
                    let after = (self.machine)(&self.cpus);
                    if since.elapsed() <= 4 * CHECK_WINDOW
                        && let Some(after) = after
                        && after.idle_share_since(&before) < BUSY_MACHINE_IDLE
                    {
                        self.hold_off();
                        held = Some((Instant::now(), after));
                    }
                    window = after.map(|t| (Instant::now(), t));
                }
                Some(_) => {}
            }
        }
        self.stop_polling();
    }

    /// A hold in force, judged from the window since `before` (the worker slept through it):
    /// still no idle CPU renews the hold and starts the next window; idle time lets the hold
    /// run out, so polling resumes with the next request after it.
    fn judge_hold(&self, before: CpuTimes) -> Option<(Instant, CpuTimes)> {
        let after = (self.machine)(&self.cpus)?;
        if !self.holding_off() || after.idle_share_since(&before) >= BUSY_MACHINE_IDLE {
            return None;
        }
        let until = self.now_ns() + self.hold.as_nanos() as u64;
        self.held_until_ns.fetch_max(until, Ordering::Relaxed);
        Some((Instant::now(), after))
    }

    /// No CPU was idle over a whole window: stop polling and keep it off for a hold.
    fn hold_off(&self) {
        let hold = self.hold;
        let until = self.now_ns() + hold.as_nanos() as u64;
        self.held_until_ns.store(until, Ordering::Relaxed);
        self.held_off.fetch_add(1, Ordering::Relaxed);
        self.stop_polling();
        log::debug!("busy poll: no idle CPU; off for {hold:?} and while it stays so");
    }

    /// Whether polling is held off now, i.e. the governor found no CPU idle within the last
    /// hold. Speculative work waits meanwhile too: on a saturated machine it takes CPU from
    /// the requests applications wait for (the attribute warmer in `background`, the
    /// page-cache prefill in `open`).
    pub fn holding_off(&self) -> bool {
        self.now_ns() < self.held_until_ns.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            period_us: if self.polls {
                self.period.as_micros() as u64
            } else {
                0
            },
            episodes: self.episodes.load(Ordering::Relaxed),
            held_off: self.held_off.load(Ordering::Relaxed),
            holding_off: self.holding_off(),
            worker_moves: self.placement.moves(),
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
    /// The times of the CPUs marked in `cpus` (all of them when it marks none).
    fn read(cpus: &[bool]) -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        CpuTimes::of_cpus(&stat, cpus)
    }

    fn of_cpus(stat: &str, cpus: &[bool]) -> Option<CpuTimes> {
        if !cpus.contains(&true) {
            return CpuTimes::parse(stat.lines().next()?);
        }
        let mut sum = CpuTimes { total: 0, idle: 0 };
        let mut found = false;
        for line in stat.lines().skip(1) {
            let Some(rest) = line.strip_prefix("cpu") else {
                break;
            };
            let Some((n, times)) = rest.split_once(' ') else {
                continue;
            };
            if n.parse::<usize>().is_ok_and(|n| cpus.get(n) == Some(&true))
                && let Some(t) = CpuTimes::parse_ticks(times)
            {
                sum.total += t.total;
                sum.idle += t.idle;
                found = true;
            }
        }
        found.then_some(sum)
    }

    /// The machine's line, `cpu  user nice system idle iowait irq softirq steal guest
    /// guest_nice`.
    fn parse(line: &str) -> Option<CpuTimes> {
        CpuTimes::parse_ticks(line.strip_prefix("cpu ")?)
    }

    /// The ticks after a `cpu`/`cpuN` label: guest time is already counted in user time, and
    /// waiting for I/O leaves the CPU free.
    fn parse_ticks(ticks: &str) -> Option<CpuTimes> {
        let ticks: Vec<u64> = ticks
            .split_whitespace()
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

/// The CPUs this process may run on; none marked if that cannot be read (then the whole
/// machine is watched).
pub(super) fn allowed_cpus() -> Vec<bool> {
    // SAFETY: sched_getaffinity of the calling thread into a zeroed set of the size given.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .map(|c| libc::CPU_ISSET(c, &set))
            .collect()
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
        assert_eq!(poll.hold, Duration::from_secs(1));
        poll.hold_off();
        let until = held + Duration::from_millis(500);
        while Instant::now() < until {
            poll.request(0);
            assert!(!nonblocking(&reader), "polling started during a hold-off");
            assert!(poll.holding_off());
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(
            (held + Duration::from_millis(1100)).saturating_duration_since(Instant::now()),
        );
        assert!(!poll.holding_off());
        poll.request(0);
        assert!(
            nonblocking(&reader),
            "polling did not resume after the hold-off"
        );
        assert_eq!(poll.snapshot().held_off, 1);
    }

    /// A machine whose CPUs are saturated or idle, as the test says.
    static SATURATED: AtomicBool = AtomicBool::new(true);
    static TICKS: AtomicU64 = AtomicU64::new(0);
    static IDLE_TICKS: AtomicU64 = AtomicU64::new(0);
    fn test_machine(_: &[bool]) -> Option<CpuTimes> {
        let idle = if SATURATED.load(Ordering::Relaxed) {
            IDLE_TICKS.load(Ordering::Relaxed)
        } else {
            IDLE_TICKS.fetch_add(50, Ordering::Relaxed) + 50
        };
        let total = TICKS.fetch_add(100, Ordering::Relaxed) + 100;
        Some(CpuTimes {
            total: total + idle,
            idle,
        })
    }

    /// Once polling found the machine saturated, it stays off for as long as the machine
    /// stays so — several holds in a row, with no polling in between to probe it — and
    /// resumes once the machine has idle time again.
    #[test]
    fn a_hold_lasts_while_the_machine_stays_saturated() {
        let (reader, _writer) = std::io::pipe().expect("pipe");
        let hold = Duration::from_millis(300);
        let poll = Arc::new(BusyPoll {
            machine: test_machine,
            hold,
            ..BusyPoll::new(reader.as_fd(), Duration::from_millis(100)).expect("busy poll")
        });
        let stop = Arc::new(AtomicBool::new(false));
        let governor = {
            let (poll, stop) = (poll.clone(), stop.clone());
            std::thread::spawn(move || poll.run(&stop))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while poll.snapshot().held_off == 0 {
            assert!(
                Instant::now() < deadline,
                "a saturated machine never held polling off"
            );
            poll.request(0);
            std::thread::sleep(Duration::from_millis(1));
        }
        let saturated_until = Instant::now() + 5 * hold;
        while Instant::now() < saturated_until {
            poll.request(0);
            assert!(
                poll.holding_off(),
                "the hold ran out on a saturated machine"
            );
            assert!(
                !nonblocking(&reader),
                "polling resumed on a saturated machine"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(poll.snapshot().held_off, 1, "renewed, not started again");
        SATURATED.store(false, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(10);
        while poll.holding_off() {
            assert!(
                Instant::now() < deadline,
                "the hold outlived the machine's saturation"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        poll.request(0);
        assert!(
            nonblocking(&reader),
            "polling did not resume on an idle machine"
        );
        stop.store(true, Ordering::Relaxed);
        governor.join().expect("governor");
    }

    /// Workers follow their requesters only while the machine is saturated: on an idle one
    /// the worker polls on a CPU of its own, which is the fast path.
    #[test]
    fn workers_follow_their_requesters_only_during_a_hold() {
        use super::super::placement::{
            INTERVAL,
            tests::{Requester, cpus, set_cpus},
        };
        let allowed = cpus();
        if allowed.len() < 2 {
            return;
        }
        let requester = Requester::on(allowed[1]);
        let (reader, _writer) = std::io::pipe().expect("pipe");
        let poll = BusyPoll::new(reader.as_fd(), Duration::from_millis(100))
            .expect("busy poll")
            .following(true);
        // A worker thread, started anew on the first CPU before each request from the
        // requester on the second, for up to `tries` requests or until it moved.
        let worker = |tries: usize| {
            std::thread::scope(|s| {
                s.spawn(|| {
                    for _ in 0..tries {
                        set_cpus(&[allowed[0]]);
                        set_cpus(&allowed);
                        poll.request(requester.tid);
                        if poll.snapshot().worker_moves > 0 {
                            break;
                        }
                        std::thread::sleep(INTERVAL);
                    }
                    poll.snapshot().worker_moves
                })
                .join()
                .expect("worker thread")
            })
        };
        assert_eq!(worker(20), 0, "a worker moved on an idle machine");
        poll.hold_off();
        assert!(worker(100) >= 1, "a worker never followed during a hold");
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
        assert!(
            CpuTimes::read(&allowed_cpus()).is_some(),
            "/proc/stat on Linux"
        );
        // The CPUs this process may use, not the whole machine: cpu1 busy beside an idle cpu0.
        let stat = "cpu  100 0 0 900 0 0 0 0 0 0\ncpu0 0 0 0 500 0 0 0 0 0 0\n\
                    cpu1 100 0 0 400 0 0 0 0 0 0\nintr 5\n";
        let all = CpuTimes::of_cpus(stat, &[]).expect("whole machine");
        assert_eq!((all.total, all.idle), (1000, 900));
        let one = CpuTimes::of_cpus(stat, &[false, true]).expect("cpu1");
        assert_eq!((one.total, one.idle), (500, 400));
        assert!(CpuTimes::of_cpus(stat, &[false, false, true]).is_none());
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
        poll.request(0);
        assert!(nonblocking(&reader), "a request starts polling");
        // Requests closer than the period keep it on (over three periods).
        let busy_until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < busy_until {
            poll.request(0);
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
        poll.request(0);
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
