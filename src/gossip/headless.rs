//! A headless node (`gitdb serve`): gossip and the remotes, without a mount, from start until a
//! signal, then a clean stop. Here rather than in the service because it owns the process's
//! life (signals, readiness notices, the line scripts wait for), which a [`Gossip`] embedded in
//! a mount does not.

use std::sync::Arc;

use super::service::{Gossip, GossipConfig, GossipError};
use crate::db::GitDb;

/// Why a headless node stopped other than by a signal.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Gossip(#[from] GossipError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    #[error("cannot sync the journal at shutdown: {0}")]
    Db(#[from] crate::db::DbError),
}

/// A headless node (`gitdb serve`): gossip (if configured) until SIGINT or SIGTERM, then a
/// clean stop: the service stops (a merge in flight finishes), the journal is synced.
pub fn serve_until_signalled(
    db: Arc<GitDb>,
    cfg: Option<GossipConfig>,
    remote: Option<crate::remote::RemoteConfig>,
) -> Result<(), ServeError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(ServeError::Signals)?;
    let gossip = match cfg {
        Some(cfg) => Some(Gossip::start(db.clone(), cfg)?),
        None if remote.is_some() => None,
        None => {
            log::warn!("gitdb serve without --listen, --peer or --remote: a single node");
            None
        }
    };
    let remote = match remote {
        Some(cfg) => Some(crate::remote::RemoteSync::start(db.clone(), cfg)?),
        None => None,
    };
    log::info!(
        "gitdb serve: node {}, repository {}{}; stop with Ctrl-C or SIGTERM",
        db.node(),
        db.git_dir().display(),
        gossip
            .as_ref()
            .and_then(|g| g.local_addr())
            .map_or(String::new(), |a| format!(", gossip on {a}"))
    );
    // The one line scripts wait for: the address actually bound (port 0 picks one).
    if let Some(a) = gossip.as_ref().and_then(|g| g.local_addr()) {
        println!("listening {a}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    crate::notify::ready(&format!(
        "node {} serving {}",
        db.node(),
        db.git_dir().display()
    ));
    let signal = signals.forever().next();
    crate::notify::stopping();
    log::info!("gitdb serve: signal {signal:?}; stopping");
    drop(remote);
    drop(gossip);
    db.sync()?;
    Ok(())
}
