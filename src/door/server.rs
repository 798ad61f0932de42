//! The daemon's side: a listener thread that hands each connection to a thread of its own (at
//! most [`MAX_CONNECTIONS`] at once), which reads one request, runs it on the db and answers.
//! Nothing a client sends can stop the door: a bad frame gets an error answer and its
//! connection closed.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::protocol::{self, Ask, Command, ErrorKind, Response};
use super::{DoorError, MAX_FRAME, MAX_VALUE, exec, socket};
use crate::GitDb;
use crate::db::Stat;

/// Connections served at once; more are answered "busy".
pub const MAX_CONNECTIONS: usize = 32;

/// How long a client may take to send its request (per read; a 64 MiB value takes well under
/// a second on a unix socket).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long writing the answer may block on a client that does not read it.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long dropping the guard waits for commands under way.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(30);

/// How often the listener looks at the stop flag.
const POLL_INTERVAL_MS: i32 = 200;

/// Serves the door of `db`'s repository until the guard is dropped. `db` must hold the writer
/// lock (the door belongs to the one process that may write).
pub fn serve(db: Arc<GitDb>) -> Result<DoorGuard, DoorError> {
    if db.is_read_only() {
        return Err(DoorError::ReadOnly);
    }
    let path = socket::socket_path(db.git_dir());
    let bound = socket::bind(&path)?;
    bound
        .listener
        .set_nonblocking(true)
        .map_err(|source| DoorError::Io {
            path: path.clone(),
            source,
        })?;
    let shared = Arc::new(Shared {
        db,
        path: path.clone(),
        stop: AtomicBool::new(false),
        uid: socket::my_uid(),
        next_id: AtomicU64::new(0),
        connections: Mutex::new(HashMap::new()),
        idle: Condvar::new(),
    });
    let listener = bound.listener;
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("gitdb-door".into())
            .spawn(move || accept_loop(&shared, &listener))
            .map_err(DoorError::Thread)?
    };
    log::info!("door: serving {}", path.display());
    Ok(DoorGuard {
        shared,
        thread: Some(thread),
        file_id: bound.file_id,
    })
}

/// Keeps the door open; dropping it stops the listener, lets commands under way finish (for
/// a while), and removes the socket file.
pub struct DoorGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    file_id: (u64, u64),
}

impl DoorGuard {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }
}

impl Drop for DoorGuard {
    fn drop(&mut self) {
        let shared = &self.shared;
        shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            log::error!("door: the listener thread panicked");
        }
        // No new connection comes now. Those still waiting for their request get end of file;
        // those running a command finish it and answer.
        let conns = shared.lock_connections();
        for c in conns.values() {
            let _ = c.shutdown(std::net::Shutdown::Read);
        }
        let (conns, timeout) = shared
            .idle
            .wait_timeout_while(conns, SHUTDOWN_WAIT, |c| !c.is_empty())
            .unwrap_or_else(|p| p.into_inner());
        if timeout.timed_out() {
            log::warn!(
                "door: {} command(s) still running after {SHUTDOWN_WAIT:?}; not waiting for them",
                conns.len()
            );
        }
        drop(conns);
        socket::remove(&shared.path, self.file_id);
        log::info!("door: closed {}", shared.path.display());
    }
}

struct Shared {
    db: Arc<GitDb>,
    path: PathBuf,
    stop: AtomicBool,
    uid: u32,
    next_id: AtomicU64,
    /// The connections being served (a clone of each, to cut short a wait for its request).
    connections: Mutex<HashMap<u64, UnixStream>>,
    /// Notified whenever a connection ends.
    idle: Condvar,
}

impl Shared {
    fn lock_connections(&self) -> MutexGuard<'_, HashMap<u64, UnixStream>> {
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &UnixListener) {
    while !shared.stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) on one pollfd that lives across the call, for a descriptor
        // `listener` owns.
        let rc = unsafe { libc::poll(&mut pfd, 1, POLL_INTERVAL_MS) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                log::warn!("door: poll: {e}");
                std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS as u64));
            }
            continue;
        }
        if rc == 0 {
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => admit(shared, stream),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                // Out of descriptors, say: the next poll retries after a pause.
                log::warn!("door: accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Hands `stream` to a thread of its own, or answers "busy".
fn admit(shared: &Arc<Shared>, mut stream: UnixStream) {
    let setup = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(REQUEST_TIMEOUT)))
        .and_then(|()| stream.set_write_timeout(Some(ANSWER_TIMEOUT)))
        .and_then(|()| stream.try_clone());
    let clone = match setup {
        Ok(c) => c,
        Err(e) => {
            log::warn!("door: setting up a connection: {e}");
            return;
        }
    };
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    {
        let mut conns = shared.lock_connections();
        if conns.len() >= MAX_CONNECTIONS {
            drop(conns);
            let busy = Response::error(
                ErrorKind::Refused,
                format!("the daemon is busy ({MAX_CONNECTIONS} requests under way); try again"),
            );
            answer(&mut stream, &busy);
            return;
        }
        conns.insert(id, clone);
    }
    let ended = Ended {
        shared: shared.clone(),
        id,
    };
    let spawned = std::thread::Builder::new()
        .name("gitdb-door-conn".into())
        .spawn(move || {
            let _ended = ended;
            let shared = _ended.shared.clone();
            serve_connection(&shared, stream);
        });
    if let Err(e) = spawned {
        // The closure (and with it `ended`) was dropped: the connection is deregistered.
        log::warn!("door: starting a connection's thread: {e}");
    }
}

/// Deregisters a connection when its thread ends, however it ends.
struct Ended {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Ended {
    fn drop(&mut self) {
        self.shared.lock_connections().remove(&self.id);
        self.shared.idle.notify_all();
    }
}

/// Reads one request from `stream`, runs it, answers.
fn serve_connection(shared: &Shared, mut stream: UnixStream) {
    let response = match socket::peer_uid(&stream) {
        Ok(uid) if socket::peer_allowed(uid, shared.uid) => respond(shared, &mut stream),
        Ok(uid) => {
            log::warn!("door: refused a client of uid {uid}");
            Response::error(
                ErrorKind::Refused,
                format!(
                    "uid {uid} may not use this door (it belongs to uid {})",
                    shared.uid
                ),
            )
        }
        Err(e) => Response::error(ErrorKind::Refused, format!("peer credentials: {e}")),
    };
    answer(&mut stream, &response);
}

/// The answer to the request on `stream`.
fn respond(shared: &Shared, stream: &mut UnixStream) -> Response {
    let ask = match protocol::read_frame(stream, MAX_FRAME).and_then(|p| protocol::decode(&p)) {
        Ok(ask) => ask,
        Err(e) => {
            log::debug!("door: bad request: {e}");
            return Response::error(ErrorKind::Protocol, format!("bad request: {e}"));
        }
    };
    let db = &shared.db;
    if let Some(refusal) = refusal(db, &ask) {
        return refusal;
    }
    log::debug!("door: {}", ask.command.name());
    exec::execute(db, &ask.command)
}

/// Why `db` will not run `ask`, if it will not.
fn refusal(db: &GitDb, ask: &Ask) -> Option<Response> {
    if ask.branch != db.branch() {
        return Some(Response::error(
            ErrorKind::Refused,
            format!(
                "the daemon holding this repository (pid {}) serves branch {}, not {}",
                std::process::id(),
                db.branch(),
                ask.branch
            ),
        ));
    }
    if let Some(node) = &ask.node
        && node != db.node().as_str()
    {
        return Some(Response::error(
            ErrorKind::Refused,
            format!(
                "the daemon holding this repository (pid {}) is node {}, not {node}",
                std::process::id(),
                db.node().as_str()
            ),
        ));
    }
    // A value too large for the answer is refused before it is read.
    if let Command::Get { key } = &ask.command
        && let Ok(Some(Stat::Value { size, .. })) = db.stat(key)
        && size > MAX_VALUE as u64
    {
        return Some(too_large(size));
    }
    None
}

fn too_large(len: u64) -> Response {
    Response::error(
        ErrorKind::TooLarge,
        format!(
            "the answer ({len} bytes) is over the door's limit of {MAX_FRAME} bytes (64 MiB values)"
        ),
    )
}

/// Writes `response` (or, if it does not fit in a frame, that it does not); a client gone
/// away is only logged.
fn answer(stream: &mut UnixStream, response: &Response) {
    let payload = match protocol::encode(response, MAX_FRAME) {
        Ok(p) => p,
        Err(protocol::FrameError::TooLarge { len, .. }) => {
            match protocol::encode(&too_large(len), MAX_FRAME) {
                Ok(p) => p,
                Err(e) => return log::error!("door: encoding an answer: {e}"),
            }
        }
        Err(e) => return log::error!("door: encoding an answer: {e}"),
    };
    if let Err(e) = protocol::write_frame(stream, &payload) {
        log::debug!("door: answering: {e}");
    }
}
