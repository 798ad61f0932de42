//! `gitdb watch`: the plan [`crate::watch`] follows, made from the flags, and how the watch
//! ends the process (a `--once` command's own exit status, 1 on a timeout).

use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

use super::error::Result;
use super::target::{Access, Target};
use crate::db::Key;
use crate::watch::{WatchEnd, WatchPlan};

/// The flags of `gitdb watch`, defined here and flattened into the binary's subcommand, so the
/// binary holds no copy of them to keep in step.
#[derive(clap::Args, Debug, Clone)]
pub struct WatchFlags {
    #[arg(default_value = "/")]
    pub prefix: String,
    /// How often the branch is looked at (e.g. 100ms, 2s).
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// After a change, wait this long for more before running COMMAND once for all.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    pub debounce: Duration,
    /// Exit after the first change (with COMMAND: with its exit status).
    #[arg(long)]
    pub once: bool,
    /// With --once: give up after this long (exit 1).
    #[arg(long, requires = "once", value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Program and arguments to run per change (no shell: use `-- sh -c '...'` for one).
    #[arg(last = true)]
    pub command: Vec<OsString>,
}

impl WatchFlags {
    /// The watch plan; an interval of 0 is taken as 1 ms (a busy loop helps nobody).
    pub fn plan(self) -> Result<WatchPlan> {
        Ok(WatchPlan {
            prefix: Key::parse(&self.prefix)?,
            interval: self.interval.max(Duration::from_millis(1)),
            debounce: self.debounce,
            once: self.once,
            timeout: self.timeout,
            command: self.command,
        })
    }
}

/// Watches `target`'s branch as `flags` say, printing changes to `out`.
pub fn run(target: &Target, flags: WatchFlags, out: &mut dyn Write) -> Result<u8> {
    let plan = flags.plan()?;
    let db = target.open(Access::Read)?;
    let end = crate::watch::run(&db, &plan, out)?;
    Ok(end_code(end, &plan, &mut std::io::stderr()))
}

/// The exit code of a watch that ended as `end` (a note on `err` for a timeout): 0 when
/// stopped, a `--once` command's status (1 if it was killed or its status is out of range),
/// 1 when nothing changed in time.
pub fn end_code(end: WatchEnd, plan: &WatchPlan, err: &mut dyn Write) -> u8 {
    match end {
        WatchEnd::Stopped => 0,
        WatchEnd::Ran(code) => code.and_then(|c| u8::try_from(c).ok()).unwrap_or(1),
        WatchEnd::TimedOut => {
            let _ = writeln!(
                err,
                "gitdb: no change under {} within {}",
                plan.prefix,
                humantime::format_duration(plan.timeout.unwrap_or_default())
            );
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(prefix: &str) -> WatchFlags {
        WatchFlags {
            prefix: prefix.into(),
            interval: Duration::ZERO,
            debounce: Duration::from_millis(200),
            once: true,
            timeout: Some(Duration::from_secs(2)),
            command: vec![],
        }
    }

    #[test]
    fn a_plan_checks_its_prefix_and_bounds_its_interval() {
        let plan = flags("/app/").plan().unwrap();
        assert_eq!(plan.interval, Duration::from_millis(1));
        assert_eq!(plan.prefix, Key::parse("app").unwrap());
        assert!(flags("/a/../b").plan().is_err());
    }

    #[test]
    fn the_end_of_a_watch_is_its_exit_code() {
        let plan = flags("/app").plan().unwrap();
        let mut err = Vec::new();
        assert_eq!(end_code(WatchEnd::Stopped, &plan, &mut err), 0);
        assert_eq!(end_code(WatchEnd::Ran(Some(3)), &plan, &mut err), 3);
        assert_eq!(end_code(WatchEnd::Ran(Some(300)), &plan, &mut err), 1);
        assert_eq!(end_code(WatchEnd::Ran(None), &plan, &mut err), 1);
        assert!(err.is_empty());
        assert_eq!(end_code(WatchEnd::TimedOut, &plan, &mut err), 1);
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "gitdb: no change under /app within 2s\n"
        );
    }
}
