//! Strategies: how a key that both sides changed (differently) is resolved.
//!
//! A resolver sees a [`ConflictCase`] whose two [`Side`]s are in *canonical* order — sorted by
//! the writing node's label, then by the writing commit — never "ours" then "theirs", so a pure
//! resolver gives the same answer on every node and the merge converges.
//!
//! * [`Strategy::LastWriteWins`]: the side whose last write of the key is later (see
//!   [`writer`](super::writer)) wins, whether that write is a value or a delete. Never merges
//!   text line by line, never "whole side wins".
//! * [`Strategy::KeepBoth`]: nothing is lost. Two values become one value with git-style
//!   markers, labelled by node, in canonical order:
//!   ```text
//!   <<<<<<< node-a
//!   value written by node-a
//!   =======
//!   value written by node-b
//!   >>>>>>> node-b
//!   ```
//!   (a value not ending in a newline gets one before the next marker). Delete vs modify keeps the
//!   modified value. The key is recorded as a conflict either way.
//! * [`Strategy::Custom`]: a closure. Returning [`Resolution::KeepBoth`] or
//!   [`Resolution::Failed`], or panicking, falls back to KeepBoth for that key (logged).
//!
//! Value vs directory at the same name is settled the same way under every strategy (see
//! [`three_way`](super::three_way)): the directory stays and the value moves to a sibling.

use std::fmt;
use std::sync::Arc;

use crate::merge::writer::Value;
use crate::store::{Bytes, ObjectId, ValueMode};

/// A user resolver: a pure function of the case, or nodes will not converge.
pub type Resolver = Arc<dyn Fn(&ConflictCase) -> Resolution + Send + Sync>;

/// How keys changed on both sides are resolved.
#[derive(Clone)]
pub enum Strategy {
    LastWriteWins,
    KeepBoth,
    Custom(Resolver),
}

impl Strategy {
    /// The name written in the merge commit's `Gitdb-Merge` trailer and taken by the CLI.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::LastWriteWins => "lww",
            Strategy::KeepBoth => "keep-both",
            Strategy::Custom(_) => "custom",
        }
    }

    /// A custom strategy from a closure.
    pub fn custom(f: impl Fn(&ConflictCase) -> Resolution + Send + Sync + 'static) -> Strategy {
        Strategy::Custom(Arc::new(f))
    }
}

impl fmt::Debug for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value with its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub mode: ValueMode,
    pub id: ObjectId,
    pub data: Bytes,
}

/// One side of a conflict: who wrote it last and what they wrote (`None`: deleted).
#[derive(Debug, Clone)]
pub struct Side {
    /// The writing node (or `commit-<hex>` when the writer has no gitdb stamp).
    pub node: String,
    /// The commit that last wrote the key on this side.
    pub writer: ObjectId,
    pub value: Option<Content>,
}

/// A key both sides changed to different results.
#[derive(Debug, Clone)]
pub struct ConflictCase {
    /// The key's tree path (`users/alice/profile`).
    pub key: String,
    /// The value in the merge base (the first base by id when there are several).
    pub base: Option<Content>,
    /// Both sides, in canonical order (by node label, then writing commit).
    pub sides: [Side; 2],
}

/// What a resolver decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// This value (mode: that of the first side with a value, else regular).
    Value(Vec<u8>),
    /// The key is deleted.
    Delete,
    /// Keep both, exactly as [`Strategy::KeepBoth`] would.
    KeepBoth,
    /// The resolver could not decide: KeepBoth is used and the reason logged.
    Failed(String),
}

/// The KeepBoth value of two sides that both have a value: markers in canonical order.
pub fn keep_both_markers(a: (&str, &[u8]), b: (&str, &[u8])) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.1.len() + b.1.len() + 64);
    let body = |out: &mut Vec<u8>, data: &[u8]| {
        out.extend_from_slice(data);
        if !data.is_empty() && !data.ends_with(b"\n") {
            out.push(b'\n');
        }
    };
    out.extend_from_slice(format!("<<<<<<< {}\n", a.0).as_bytes());
    body(&mut out, a.1);
    out.extend_from_slice(b"=======\n");
    body(&mut out, b.1);
    out.extend_from_slice(format!(">>>>>>> {}\n", b.0).as_bytes());
    out
}

/// The mode of a merged value: the sides' common mode, else regular (markers are text).
pub fn merged_mode(sides: &[Side; 2]) -> ValueMode {
    match (&sides[0].value, &sides[1].value) {
        (Some(a), Some(b)) if a.mode == b.mode && a.mode != ValueMode::Symlink => a.mode,
        (Some(a), None) | (None, Some(a)) => a.mode,
        _ => ValueMode::Regular,
    }
}

/// The result of resolving one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A value that already exists (one side's), or `None` for deleted.
    Existing(Value),
    /// New bytes to write as a blob with this mode.
    New(ValueMode, Vec<u8>),
}

/// What the per-key merge does with a conflict: the result, and whether the key stays listed
/// as a conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub conflict: bool,
}

/// KeepBoth for one case.
pub fn keep_both(case: &ConflictCase) -> Decision {
    let [a, b] = &case.sides;
    let outcome = match (&a.value, &b.value) {
        (Some(va), Some(vb)) => Outcome::New(
            merged_mode(&case.sides),
            keep_both_markers((&a.node, &va.data), (&b.node, &vb.data)),
        ),
        (Some(v), None) | (None, Some(v)) => Outcome::Existing(Some((v.mode, v.id))),
        (None, None) => Outcome::Existing(None),
    };
    Decision {
        outcome,
        conflict: true,
    }
}

/// Runs a custom resolver, falling back to KeepBoth (with a log line) when it fails.
pub fn run_custom(resolver: &Resolver, case: &ConflictCase) -> Decision {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| resolver(case)));
    let why = match result {
        Ok(Resolution::Value(data)) => {
            return Decision {
                outcome: Outcome::New(merged_mode(&case.sides), data),
                conflict: false,
            };
        }
        Ok(Resolution::Delete) => {
            return Decision {
                outcome: Outcome::Existing(None),
                conflict: false,
            };
        }
        Ok(Resolution::KeepBoth) => return keep_both(case),
        Ok(Resolution::Failed(why)) => why,
        Err(_) => "the resolver panicked".to_owned(),
    };
    log::warn!(
        "custom merge of {} failed ({why}); keeping both values",
        case.key
    );
    keep_both(case)
}
