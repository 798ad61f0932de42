//! Durations on the command line, for every binary and daemon alike (`gitdb-mount`'s flags and
//! `-o` options, `gitdb serve`'s `--autocommit`): `humantime`'s forms (`500ms`, `5s`, `2m`,
//! `1h 30m`) or a bare number of seconds, bounded by a year so that no value overflows a
//! deadline computed from it later. Here, outside `fuse`, because a headless node takes the
//! same `--autocommit` as a mount and must read it the same way.

use std::time::Duration;

/// The longest duration any option takes: longer ones are typos, and would overflow a
/// deadline computed from them.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A duration that could not be read, with the text given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {value:?}: {reason} (examples: 500ms, 5s, 2m, 1h 30m)")]
pub struct DurationError {
    pub value: String,
    pub reason: String,
}

/// A duration such as `500ms`, `5s`, `2m`, `1h 30m` (humantime), or a bare number of
/// seconds; at most [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    let err = |reason: String| DurationError {
        value: s.to_owned(),
        reason,
    };
    let d = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(s.parse().map_err(|_| err("too large".into()))?)
    } else {
        humantime::parse_duration(s).map_err(|e| err(e.to_string()))?
    };
    if d > MAX_DURATION {
        return Err(err("longer than a year".into()));
    }
    Ok(d)
}

/// `--autocommit`: commit after this much quiet, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Autocommit(pub Option<Duration>);

/// `off` (or `0`): never; else a duration.
pub fn parse_autocommit(s: &str) -> Result<Autocommit, DurationError> {
    if s.trim() == "off" || s.trim() == "0" {
        return Ok(Autocommit(None));
    }
    parse_duration(s).map(|d| Autocommit(Some(d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autocommit_is_off_or_a_bounded_duration() {
        assert_eq!(parse_autocommit("off"), Ok(Autocommit(None)));
        assert_eq!(parse_autocommit("0"), Ok(Autocommit(None)));
        assert_eq!(
            parse_autocommit("200ms"),
            Ok(Autocommit(Some(Duration::from_millis(200))))
        );
        assert_eq!(
            parse_autocommit("3"),
            Ok(Autocommit(Some(Duration::from_secs(3))))
        );
        assert!(parse_autocommit("2y").is_err());
        assert!(parse_autocommit("soon").is_err());
    }
}
