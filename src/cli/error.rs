//! The client's and the daemon's errors, and how a command's result ends the process. Every
//! message a user sees comes from one of these typed errors (each names what it concerns);
//! the binaries print it once, prefixed with their name.

use std::path::PathBuf;

/// Errors of the binaries' commands.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("no repository at {path} (commands that write create one)")]
    NoRepository { path: PathBuf },
    #[error(transparent)]
    Node(#[from] crate::db::ClockError),
    #[error(transparent)]
    Key(#[from] crate::db::KeyError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("--strategy custom needs --merge-driver CMD")]
    CustomNeedsDriver,
    #[error("--merge-driver only goes with --strategy custom")]
    DriverNeedsCustom,
    #[error(transparent)]
    Merge(#[from] crate::gossip::merging::MergeError),
    #[error(transparent)]
    Watch(#[from] crate::watch::WatchError),
    #[error(transparent)]
    Door(#[from] crate::door::DoorError),
    #[error(transparent)]
    GossipFlags(#[from] crate::gossip::cli::GossipCliError),
    #[error(transparent)]
    Gossip(#[from] crate::gossip::GossipError),
    #[error(transparent)]
    Serve(#[from] crate::gossip::ServeError),
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    #[error(transparent)]
    Mount(#[from] crate::fuse::MountError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// Writing the command's output (stdout).
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;

impl CliError {
    /// An I/O error about `what` (a path, a step), named in the message.
    pub fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> CliError {
        move |source| CliError::Io {
            what: what.to_string(),
            source,
        }
    }
}

/// The exit code of a command of `program` that ended with `result`: its own code, 0 when
/// it failed only because the reader of its output went away (`gitdb log | head -1`: nothing
/// to report), else `failure` after the error is printed once to stderr.
pub fn exit_code(program: &str, result: Result<u8>, failure: u8) -> u8 {
    match result {
        Ok(code) => code,
        Err(e) if broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("{program}: {e}");
            failure
        }
    }
}

/// Whether `e` is, or wraps, a write to a closed pipe.
fn broken_pipe(mut e: &(dyn std::error::Error + 'static)) -> bool {
    loop {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return true;
        }
        match e.source() {
            Some(inner) => e = inner,
            None => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    #[test]
    fn a_closed_pipe_anywhere_in_the_chain_is_a_quiet_success() {
        let pipe = || Error::from(ErrorKind::BrokenPipe);
        assert_eq!(exit_code("t", Err(CliError::Output(pipe())), 2), 0);
        let wrapped = CliError::Watch(crate::watch::WatchError::Output(pipe()));
        assert_eq!(exit_code("t", Err(wrapped), 2), 0);
        assert_eq!(exit_code("t", Err(CliError::io("x")(pipe())), 2), 0);
        assert_eq!(
            exit_code("t", Err(CliError::Output(ErrorKind::Other.into())), 2),
            2
        );
        assert_eq!(exit_code("t", Err(CliError::CustomNeedsDriver), 1), 1);
        assert_eq!(exit_code("t", Ok(7), 2), 7);
    }
}
