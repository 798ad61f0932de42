#!/usr/bin/env bash
# Soak: scripts/soak.sh [DURATION] [extra cargo test args, e.g. --release]
#
# Runs tests/soak.rs for DURATION (seconds, or with s/m/h: 90, 10m, 1h; default 10m): two
# gitdb-mounts and a headless gitdb serve with gossip on, writers on each (fsync through the
# mounts, the door for the headless node), every node committing every 2-4 s; at the end the
# heads must be identical, every acknowledged value in the head and in both mounts, the daemons'
# RSS (printed at start, peak and end) bounded, and no ERROR line in any log. The suite runs
# the same test for 20 s. Needs root (FUSE mounts).
set -euo pipefail
cd "$(dirname "$0")/.."

d=${1:-10m}
shift || true
case $d in
  *h) secs=$(( ${d%h} * 3600 )) ;;
  *m) secs=$(( ${d%m} * 60 )) ;;
  *s) secs=${d%s} ;;
  *) secs=$d ;;
esac
case $secs in
  '' | *[!0-9]*) echo "usage: scripts/soak.sh [DURATION: 600, 10m, 1h] [cargo test args]" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then
  echo "scripts/soak.sh: run as root: the test mounts FUSE filesystems" >&2
  exit 1
fi

log=$(mktemp /tmp/gitdb-soak.XXXXXX.log)
echo "soak.sh: $secs s, log in $log"
start=$(date +%s)
set +e
GITDB_SOAK_SECS=$secs cargo test "$@" --test soak -- --nocapture >"$log" 2>&1
rc=$?
set -e
grep -E '^soak|panicked|test result' "$log"
echo "soak.sh: exit $rc after $(( $(date +%s) - start )) s ($(date -u +%F), load average $(cut -d' ' -f1-3 /proc/loadavg))"
exit $rc
