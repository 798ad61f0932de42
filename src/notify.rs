//! Notices to a service manager: systemd's `sd_notify` protocol (`READY=1` once the daemon
//! serves, `STOPPING=1` when a clean stop begins), so a `Type=notify` unit orders the services
//! that read the mount after it answers, not after the process merely started. The sd-notify
//! crate speaks the protocol; it does nothing when `NOTIFY_SOCKET` is unset (a daemon run by
//! hand, a mount helper, the tests that do not ask for it).
//!
//! A notice that cannot be sent is logged and otherwise ignored: the daemon serves either way,
//! and systemd reports a unit that never got ready by its own timeout.

use sd_notify::NotifyState;

/// Tells the service manager the daemon serves now, with a one-line `status` for
/// `systemctl status`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells the service manager a clean stop has begun (what open files hold is being stored,
/// the mount is being detached), so it waits for the exit instead of calling it a failure.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

fn send(states: &[NotifyState]) {
    match sd_notify::notify(states) {
        Ok(()) => {}
        // The socket is gone: its owner stopped listening (the mount helper does, once it has
        // seen READY=1), which is no fault of the daemon's.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            log::debug!("telling the service manager (NOTIFY_SOCKET): {e}")
        }
        Err(e) => log::warn!("telling the service manager (NOTIFY_SOCKET): {e}"),
    }
}
