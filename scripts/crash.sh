#!/usr/bin/env bash
# Crash consistency, the long run: scripts/crash.sh [ROUNDS] [extra cargo test args, e.g. --release]
#
# Runs tests/crash_mount.rs with GITDB_CRASH_ROUNDS=ROUNDS (default 100): ROUNDS kill -9s of a
# real gitdb-mount while writers write, fsync, rename and unlink through the mount and commits
# run (every 10th round during a 20,000-file commit, every 10th during a 100 MiB write), each
# followed by a restart on the same mountpoint and the checks (git fsck --strict, every
# acknowledged value, history, the mountpoint); then ROUNDS/2 rounds of a mounted node and a
# headless `gitdb serve`, one killed while a large commit crosses. The suite (scripts/test.sh)
# runs the same tests with 10 rounds. GITDB_CRASH_SEED=N replays a run's randomness (each run
# prints its seed). Needs root (FUSE mounts), as scripts/test.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-100}
shift || true
case $rounds in
  '' | *[!0-9]*) echo "usage: scripts/crash.sh [ROUNDS] [cargo test args]" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then
  echo "scripts/crash.sh: run as root: the test mounts FUSE filesystems" >&2
  exit 1
fi

log=$(mktemp /tmp/gitdb-crash.XXXXXX.log)
echo "crash.sh: $rounds rounds, log in $log"
start=$(date +%s)
# One test at a time: the figures are then each suite's own.
set +e
GITDB_CRASH_ROUNDS=$rounds cargo test "$@" --test crash_mount -- --nocapture --test-threads=1 \
  >"$log" 2>&1
rc=$?
set -e
grep -E '^(round|gossip round|crash_mount)|panicked|test result' "$log" | tail -n 40
echo "crash.sh: exit $rc after $(( $(date +%s) - start )) s ($(date -u +%F))"
exit $rc
