//! The attribute warmer: a child process that stats files through the mount.
//!
//! A write makes the kernel drop the file's attributes, so the `stat` that usually follows a
//! write would cost a GETATTR round trip on the writer's path. Asking for them off that path,
//! once the writer let go of the file, puts them back in the kernel's cache. But the daemon
//! must never do I/O on its own mount: a request that one of its own FUSE workers has read is
//! waited for uninterruptibly, so if `kill -9` lands while a worker holds it, the asking
//! thread never returns, the process never exits, its `/dev/fuse` descriptor never closes and
//! the mount hangs instead of reporting "Transport endpoint is not connected". So the stats
//! come from a separate process, forked at mount time, which holds no descriptor of the
//! daemon's (in particular not `/dev/fuse`) and nothing on the mount. When the daemon dies,
//! the connection is aborted, a stat in flight fails, and the child sees the end of its pipe
//! (or `PR_SET_PDEATHSIG`) and exits.
//!
//! The child runs right after `fork` in a multithreaded process, so it only makes raw system
//! calls on memory prepared before the fork: no allocation, no locks, no Rust I/O.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One path a request names: what the pipe carries at most per file (longer ones are not
/// warmed). A pipe write up to `PIPE_BUF` (4096) bytes is atomic.
const MAX_PATH: usize = 4000;

/// The warmer process and the pipe that feeds it mount-relative paths.
pub struct Warmer {
    pid: libc::pid_t,
    /// The pipe's write end; taken (closed) first when the warmer is dropped.
    tx: Option<OwnedFd>,
}

impl Warmer {
    /// Forks the warmer for the mount at `mountpoint` (absolute).
    pub fn start(mountpoint: &Path) -> io::Result<Warmer> {
        use std::os::unix::ffi::OsStrExt;
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid out-array of two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 just returned these two descriptors, owned by nobody else.
        let (rx, tx) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: as above; the write end must never block the notifier thread.
        if unsafe { libc::fcntl(tx.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // Everything the child touches is made here, before the fork.
        let mut prefix = mountpoint.as_os_str().as_bytes().to_vec();
        prefix.push(b'/');
        let mut path = vec![0u8; prefix.len() + MAX_PATH + 1];
        path[..prefix.len()].copy_from_slice(&prefix);
        let mut buf = vec![0u8; 2 * (MAX_PATH + 1)];
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: fork(2); the child only runs `child_loop`, which makes async-signal-safe
        // system calls on the buffers above and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            child_loop(rx.as_raw_fd(), parent, &mut path, prefix.len(), &mut buf);
        }
        drop(rx);
        Ok(Warmer { pid, tx: Some(tx) })
    }

    /// The warmer's process id (its GETATTRs are the warming, see `stats`).
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Asks for the attributes of `path` (mount-relative). Best effort: a path too long, or
    /// a full pipe (the warmer is behind), is skipped.
    pub fn warm(&self, path: &str) {
        if path.len() >= MAX_PATH || path.as_bytes().contains(&0) {
            return;
        }
        let mut msg = Vec::with_capacity(path.len() + 1);
        msg.extend_from_slice(path.as_bytes());
        msg.push(0);
        if let Some(tx) = &self.tx {
            // SAFETY: writes `msg` to our own pipe; a failed write only loses a warming (one
            // up to PIPE_BUF bytes is never short).
            let _ = unsafe { libc::write(tx.as_raw_fd(), msg.as_ptr().cast(), msg.len()) };
        }
    }
}

impl Drop for Warmer {
    fn drop(&mut self) {
        // Closing the pipe ends the child; it may be inside a stat the mount is still
        // answering, so give it a moment before killing it, then reap it.
        drop(self.tx.take());
        for _ in 0..100 {
            // SAFETY: waitpid on our own child.
            if unsafe { libc::waitpid(self.pid, std::ptr::null_mut(), libc::WNOHANG) } != 0 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // SAFETY: kill and reap our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// The child: reads NUL-terminated relative paths from `rx` and `lstat`s each below the mount.
fn child_loop(rx: i32, parent: libc::pid_t, path: &mut [u8], base: usize, buf: &mut [u8]) -> ! {
    // SAFETY (whole function): raw, async-signal-safe system calls on memory allocated before
    // the fork; nothing here allocates, locks or unwinds.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // What `ps`, `top` and `pgrep` (without -f) show, so it is not taken for the daemon.
        libc::prctl(libc::PR_SET_NAME, c"gitdb-warmer".as_ptr());
        if libc::getppid() != parent {
            libc::_exit(0);
        }
        // Hold nothing of the daemon's: above all not /dev/fuse, whose last close is what
        // aborts the connection when the daemon dies.
        let max = libc::c_uint::MAX;
        if rx > 0 {
            libc::syscall(
                libc::SYS_close_range,
                0 as libc::c_uint,
                (rx - 1) as libc::c_uint,
                0,
            );
        }
        libc::syscall(libc::SYS_close_range, (rx + 1) as libc::c_uint, max, 0);
        let mut st: libc::stat = std::mem::zeroed();
        let mut have = 0usize;
        loop {
            let n = libc::read(rx, buf.as_mut_ptr().add(have).cast(), buf.len() - have);
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            if n <= 0 {
                libc::_exit(0);
            }
            have += n as usize;
            let mut start = 0;
            while let Some(len) = buf[start..have].iter().position(|&b| b == 0) {
                if len < MAX_PATH {
                    path[base..base + len].copy_from_slice(&buf[start..start + len]);
                    path[base + len] = 0;
                    libc::lstat(path.as_ptr().cast(), &mut st);
                }
                start += len + 1;
            }
            // Keep a partial record for the next read; drop one that cannot fit.
            buf.copy_within(start..have, 0);
            have -= start;
            if have == buf.len() {
                have = 0;
            }
        }
    }
}
