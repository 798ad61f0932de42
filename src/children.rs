//! Child processes the node starts (stock git's repack, the git CLI of `--remote`) end with it.
//!
//! Why: a `kill -9` of the daemon leaves its children running, reparented to init. An orphaned
//! `git repack -d` goes on rolling up packs and deleting the loose objects it packed while the
//! restarted node — whose own repack knows nothing of it — starts another, and while an
//! operator's `git fsck` lists those loose objects and then finds them gone (the crash suite
//! met exactly that: "unable to mmap objects/20/5f25…" after a restart, every object there
//! intact in the new pack). A child made with [`die_with_parent`] is sent SIGTERM when the
//! thread that started it ends, which git answers by removing its temp packs; anything git had
//! already renamed into place is whole, so stopping it at any moment loses nothing.
//!
//! Kept out of store and remote (like [`crate::memory`]) so the layers name no platform call.

use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::unistd::{getpid, getppid};

/// Makes `cmd`'s child get SIGTERM once the thread spawning it ends (Linux's parent-death
/// signal follows the thread, so spawn from the thread that waits for the child). A child
/// whose parent died before the signal was armed exits at once instead of running orphaned.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    let parent = getpid();
    // SAFETY: between fork and exec only async-signal-safe calls run here: prctl(2) and
    // getppid(2), no allocation, no lock.
    unsafe {
        cmd.pre_exec(move || {
            prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)?;
            if getppid() != parent {
                return Err(std::io::Error::other(
                    "the node ended before its child started",
                ));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A child started from a thread that then ends is gone soon after; the same child without
    /// the call outlives it (so the check below can fail).
    #[test]
    fn a_child_ends_when_the_thread_that_started_it_does() {
        let start = |armed: bool| {
            std::thread::spawn(move || {
                let mut cmd = Command::new("sleep");
                cmd.arg("30");
                if armed {
                    die_with_parent(&mut cmd);
                }
                cmd.spawn().expect("sleep").id()
            })
            .join()
            .expect("spawner")
        };
        let alive = |pid: u32| {
            // Reaped or not, a killed child stops being "S"/"R": read its state.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    let state = s.rsplit(')').next().unwrap_or("").trim_start();
                    !state.starts_with('Z') && !state.starts_with('X')
                })
                .unwrap_or(false)
        };
        let armed = start(true);
        let plain = start(false);
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(armed) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!alive(armed), "the armed child outlived its thread");
        assert!(
            alive(plain),
            "the plain child died too: the check proves nothing"
        );
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(plain as i32), Signal::SIGKILL);
    }
}
