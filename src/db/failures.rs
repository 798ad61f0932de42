//! The last failure of each background operation, for `status`'s `last_error`. The db keeps
//! one for its own tasks (autocommit, see [`super::tasks`]) and the mount one for what fails in
//! its callbacks (`ctl`, storing a written file); `status` shows the latest of both. Kept by
//! each layer for itself, so db never calls up into fuse to report a failure.

/// The last failure of each operation, for `status`'s `last_error`: an operation's entry is
/// dropped when that operation next succeeds, so what `status` shows is still failing, and
/// when it was, rather than a message that stays forever after one bad moment.
#[derive(Debug, Default)]
pub struct LastErrors {
    by_op: std::collections::BTreeMap<String, (u64, FailedOp)>,
    seq: u64,
}

/// One failure as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FailedOp {
    /// What failed: `ctl`, `autocommit`, `write /key`.
    pub op: String,
    pub message: String,
    /// When, as RFC 3339 (UTC) and as Unix milliseconds.
    pub at: String,
    pub at_ms: u64,
}

impl LastErrors {
    pub fn failed(&mut self, op: &str, message: String, now_ms: u64) {
        self.seq += 1;
        let at = humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(now_ms),
        )
        .to_string();
        let failure = FailedOp {
            op: op.to_owned(),
            message,
            at,
            at_ms: now_ms,
        };
        self.by_op.insert(op.to_owned(), (self.seq, failure));
    }

    pub fn succeeded(&mut self, op: &str) {
        self.by_op.remove(op);
    }

    pub fn is_empty(&self) -> bool {
        self.by_op.is_empty()
    }

    /// The most recent failure of the operations still failing.
    pub fn latest(&self) -> Option<&FailedOp> {
        self.by_op
            .values()
            .max_by_key(|(seq, _)| *seq)
            .map(|(_, f)| f)
    }
}
