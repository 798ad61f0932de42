//! The client's side: send a command to the daemon's door if one answers, else run it on the
//! repository directly (what the `gitdb` client did before there was a door).

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::protocol::{self, Ask, ErrorKind, FrameError, Response};
use super::{DoorError, MAX_FRAME, exec, socket};
use crate::{DbError, GitDb};

/// Where the door of the repository at `repo` would be; `None` when there is no repository.
pub fn door_of(repo: &Path) -> Option<PathBuf> {
    let git_dir = GitDb::git_dir_of(repo).ok()?;
    Some(socket::socket_path(&git_dir))
}

/// Connects to the door at `path`, sends `ask`, and reads the answer.
pub fn request(path: &Path, ask: &Ask) -> Result<Response, DoorError> {
    let stream = socket::connect(path).map_err(|source| DoorError::Io {
        path: path.to_owned(),
        source,
    })?;
    exchange(path, stream, ask)
}

fn exchange(path: &Path, mut stream: UnixStream, ask: &Ask) -> Result<Response, DoorError> {
    let frame_err = |source| DoorError::Frame {
        path: path.to_owned(),
        source,
    };
    let payload = protocol::encode(ask, MAX_FRAME).map_err(frame_err)?;
    let sent = protocol::write_frame(&mut stream, &payload);
    // Whether or not all of it went out, the daemon may have answered (it answers "busy" or
    // "refused" without reading the request, then closes): the answer says more than EPIPE.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    match protocol::read_frame(&mut stream, MAX_FRAME).and_then(|p| protocol::decode(&p)) {
        Ok(response) => Ok(response),
        Err(e) => Err(frame_err(match sent {
            Err(sent) => sent,
            Ok(()) => e,
        })),
    }
}

/// Runs `ask` the way the `gitdb` client does: through the door of the repository at `repo`
/// when a daemon answers there, else on the db `direct` opens (read-only for reads; for
/// writes it meets the writer lock of a daemon whose door does not answer, and the error says
/// so). A read the door cannot serve (an answer over the limit, another branch) is also run
/// directly.
pub fn run(repo: &Path, ask: &Ask, direct: impl FnOnce() -> Result<GitDb, DbError>) -> Response {
    let mut unanswered = None;
    if let Some(path) = door_of(repo) {
        match socket::connect(&path) {
            Ok(stream) => match exchange(&path, stream, ask) {
                Ok(Response::Error {
                    kind: kind @ (ErrorKind::TooLarge | ErrorKind::Refused),
                    message,
                }) if ask.command.is_read() => {
                    log::info!(
                        "door {}: {message} ({kind:?}); reading the repository directly",
                        path.display()
                    );
                }
                Ok(response) => return response,
                Err(
                    e @ DoorError::Frame {
                        source: FrameError::TooLarge { .. },
                        ..
                    },
                ) if !ask.command.is_read() => {
                    return Response::error(
                        ErrorKind::TooLarge,
                        format!("{e}; write larger values through the mount"),
                    );
                }
                Err(e) if ask.command.is_read() => {
                    log::warn!("{e}; reading the repository directly");
                }
                // The daemon may or may not have run the command: say so, do not run it again.
                Err(e) => {
                    return Response::error(
                        ErrorKind::Failed,
                        format!(
                            "{e} (the daemon may or may not have run the {} command)",
                            ask.command.name()
                        ),
                    );
                }
            },
            // No door: no daemon has served this repository, or the last one stopped cleanly.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                log::debug!("door {}: {e}", path.display());
                unanswered = Some(format!("its door {} does not answer: {e}", path.display()));
            }
        }
    }
    match direct() {
        Ok(db) => exec::execute(&db, &ask.command),
        Err(e @ DbError::Locked { .. }) => match unanswered {
            Some(why) => Response::error(ErrorKind::Failed, format!("{e}; {why}")),
            None => Response::error(ErrorKind::Failed, e),
        },
        Err(e) => Response::error(ErrorKind::Failed, e),
    }
}

/// Writes `response` to stdout and stderr as the client prints it; returns the exit code.
pub fn print(response: &Response) -> std::io::Result<u8> {
    let mut out = std::io::stdout().lock();
    let code = response.print(&mut out, &mut std::io::stderr())?;
    out.flush()?;
    Ok(code)
}
