//! The commands a daemon serves (get, set, rm, ls, commit, rollback, status, metrics, log,
//! sync): sent through the door of the repository while a daemon holds it, else run on the
//! repository directly (see [`crate::door::client::run`]), and printed as the door's answer.
//! What is left to the client is what the flags cannot say by themselves: a `set`'s value read
//! from stdin, and its mode.

use std::io::Read;

use super::error::{CliError, Result};
use super::target::{Access, Target};
use crate::ValueMode;
use crate::door::{self, Command};

/// The value of a `set`: the argument, or all of `stdin` when there is none.
pub fn set_value(arg: Option<String>, stdin: &mut impl Read) -> Result<Vec<u8>> {
    match arg {
        Some(v) => Ok(v.into_bytes()),
        None => {
            let mut buf = Vec::new();
            stdin
                .read_to_end(&mut buf)
                .map_err(CliError::io("reading the value from stdin"))?;
            Ok(buf)
        }
    }
}

/// The mode `--exec` / `--symlink` ask for (clap refuses both at once).
pub fn value_mode(exec: bool, symlink: bool) -> ValueMode {
    if exec {
        ValueMode::Executable
    } else if symlink {
        ValueMode::Symlink
    } else {
        ValueMode::Regular
    }
}

/// Whether `command` opens the repository for writing when no daemon serves it. `sync` does
/// not: without a daemon there are no peers, and a reader's answer says so.
pub fn access(command: &Command) -> Access {
    match command {
        Command::Set { .. } | Command::Rm { .. } | Command::Commit { .. } | Command::Rollback => {
            Access::Write
        }
        Command::Get { .. }
        | Command::Ls { .. }
        | Command::Status
        | Command::Metrics
        | Command::Log { .. }
        | Command::Sync => Access::Read,
    }
}

/// Runs `command` on `target` and prints its answer; returns the exit code.
pub fn run(target: &Target, command: Command) -> Result<u8> {
    let access = access(&command);
    target.check(access)?;
    let ask = door::Ask {
        branch: target.branch.clone(),
        node: target.node_flag.clone(),
        command,
    };
    let response = door::client::run(&target.repo, &ask, || target.open_db(access));
    Ok(door::client::print(&response)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_takes_its_argument_else_all_of_stdin() {
        let mut stdin: &[u8] = b"from\nstdin\0bytes";
        assert_eq!(set_value(Some("arg".into()), &mut stdin).unwrap(), b"arg");
        assert_eq!(set_value(None, &mut stdin).unwrap(), b"from\nstdin\0bytes");
        assert_eq!(value_mode(false, false), ValueMode::Regular);
        assert_eq!(value_mode(true, false), ValueMode::Executable);
        assert_eq!(value_mode(false, true), ValueMode::Symlink);
    }

    #[test]
    fn writers_are_the_commands_that_change_the_store() {
        let write = [
            Command::Set {
                key: "k".into(),
                value: vec![],
                mode: ValueMode::Regular,
            },
            Command::Rm {
                key: "k".into(),
                recursive: false,
            },
            Command::Commit {
                message: "m".into(),
            },
            Command::Rollback,
        ];
        for c in &write {
            assert_eq!(access(c), Access::Write, "{c:?}");
            assert!(!c.is_read(), "the door agrees {c:?} is no read");
        }
        for c in [
            Command::Get { key: "k".into() },
            Command::Status,
            Command::Sync,
        ] {
            assert_eq!(access(&c), Access::Read, "{c:?}");
        }
    }

    #[test]
    fn a_read_of_a_missing_repository_fails_before_the_door_is_tried() {
        let dir = tempfile::tempdir().unwrap();
        let t = Target::new(Some(dir.path().join("none.git")), None, "main".into()).unwrap();
        let r = run(&t, Command::Get { key: "/k".into() });
        assert!(matches!(r, Err(CliError::NoRepository { .. })), "{r:?}");
        assert!(!t.repo.exists());
    }
}
