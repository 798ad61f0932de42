//! `gitdb merge REV`: merge a commit already in the repository (fetched by `git fetch` from
//! another node, say) into the branch, as gossip would, and report what happened.
//!
//! The merge itself is gossip's [`crate::gossip::merging`], the one door to the merge layer for
//! the binaries' level (db, below merge, offers no merge verb). This file turns the flags into
//! a strategy and the outcome into lines; the binary only hands over its parsed flags.

use std::io::Write;
use std::time::Duration;

use super::error::{CliError, Result};
use super::target::{Access, Target};
use crate::gossip::merging::{MergeOutcome, Strategy, merge_driver, merge_head};

/// `--strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StrategyFlag {
    Lww,
    KeepBoth,
    Custom,
}

/// The strategy `--strategy` and `--merge-driver` ask for: keep-both by default, custom when a
/// driver is given (running `driver` for at most `driver_timeout` per key); a driver with
/// another strategy, or custom without one, is an error.
pub fn strategy(
    flag: Option<StrategyFlag>,
    driver: Option<&str>,
    driver_timeout: Duration,
) -> Result<Strategy> {
    Ok(match (flag, driver) {
        (Some(StrategyFlag::Custom) | None, Some(cmd)) => merge_driver(cmd, driver_timeout),
        (Some(StrategyFlag::Custom), None) => return Err(CliError::CustomNeedsDriver),
        (Some(_), Some(_)) => return Err(CliError::DriverNeedsCustom),
        (Some(StrategyFlag::Lww), None) => Strategy::LastWriteWins,
        (Some(StrategyFlag::KeepBoth) | None, None) => Strategy::KeepBoth,
    })
}

/// Merges `rev` into `target`'s branch with `strategy`; prints `noop`, `fast-forward <id>`,
/// `superseded-by <id>` or `merged <id>` and one `conflict /key` line per key left in conflict.
pub fn run(target: &Target, rev: &str, strategy: &Strategy, out: &mut dyn Write) -> Result<u8> {
    let db = target.open(Access::Write)?;
    let theirs = db.resolve_rev(rev)?;
    match merge_head(&db, theirs, strategy)? {
        MergeOutcome::NoOp => writeln!(out, "noop")?,
        MergeOutcome::FastForward { to, .. } => writeln!(out, "fast-forward {to}")?,
        MergeOutcome::Superseded { to, .. } => writeln!(out, "superseded-by {to}")?,
        MergeOutcome::Merged { commit, conflicts } => {
            writeln!(out, "merged {commit}")?;
            for key in conflicts {
                writeln!(out, "conflict /{key}")?;
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(1);

    #[test]
    fn the_flags_choose_one_strategy_or_say_what_is_missing() {
        assert!(matches!(strategy(None, None, T), Ok(Strategy::KeepBoth)));
        assert!(matches!(
            strategy(Some(StrategyFlag::Lww), None, T),
            Ok(Strategy::LastWriteWins)
        ));
        assert!(matches!(
            strategy(None, Some("true %A"), T),
            Ok(Strategy::Custom(_))
        ));
        assert!(matches!(
            strategy(Some(StrategyFlag::Custom), None, T),
            Err(CliError::CustomNeedsDriver)
        ));
        assert!(matches!(
            strategy(Some(StrategyFlag::Lww), Some("x"), T),
            Err(CliError::DriverNeedsCustom)
        ));
    }

    /// Commits `key` = `value` on `branch` of the repository at `t`'s path.
    fn commit_on(t: &Target, branch: &str, key: &str, value: &str, at: u64) {
        let t = Target {
            branch: branch.into(),
            ..t.clone()
        };
        let db = t.open(Access::Write).unwrap();
        db.set(key, value.as_bytes()).unwrap();
        db.commit("test", at).unwrap();
    }

    fn merged(t: &Target, rev: &str) -> String {
        let mut out = Vec::new();
        assert_eq!(run(t, rev, &Strategy::KeepBoth, &mut out).unwrap(), 0);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn merging_a_branch_reports_each_outcome_and_its_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let t = Target::new(
            Some(dir.path().join("r.git")),
            Some("n1".into()),
            "main".into(),
        )
        .unwrap();
        commit_on(&t, "other", "/k", "theirs", 1000);
        let other = t.open(Access::Read).unwrap().resolve_rev("other").unwrap();
        assert_eq!(merged(&t, "other"), format!("fast-forward {other}\n"));
        assert_eq!(merged(&t, "other"), "noop\n");
        commit_on(&t, "main", "/k", "ours", 2000);
        commit_on(&t, "other", "/k", "theirs again", 3000);
        let report = merged(&t, "other");
        let head = t.open(Access::Read).unwrap().head().unwrap();
        assert_eq!(report, format!("merged {head}\nconflict /k\n"));
        assert!(matches!(
            run(&t, "nosuchrev", &Strategy::KeepBoth, &mut Vec::new()),
            Err(CliError::Db(_))
        ));
    }
}
