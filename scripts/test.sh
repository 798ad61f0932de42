#!/usr/bin/env bash
# The whole test suite: installs what the tests drive (git, fuse3, python3), then runs every
# unit, property and integration test. Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v git >/dev/null || need+=(git)
command -v python3 >/dev/null || need+=(python3)
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v systemd-analyze >/dev/null || need+=(systemd) # tests/systemd.rs checks the unit
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "scripts/test.sh: please install: ${need[*]}" >&2
    exit 1
  fi
fi

# Tests run in parallel; each makes its own temp dirs, ports and mounts. Benchmarks are not run
# here (scripts/bench-*.sh); clippy --all-targets in .ci/run still compiles them.
exec cargo test "$@"
