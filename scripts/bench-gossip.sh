#!/usr/bin/env bash
# Gossip benchmarks, figures side by side with git in the same run:
# - bytes per sync (one key, 1,000 keys, 50 commits) against `git pack-objects --thin`, and the
#   catch-up of a new node against `git clone --bare` from a `git daemon` (cargo bench --bench
#   gossip; size GITDB_BENCH_KEYS, default 100000);
# - convergence of 16 and 32 headless daemons on loopback, written to through their doors
#   (scripts/bench-converge.py; sizes as arguments).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v git >/dev/null || { apt-get update -qq && apt-get install -y -qq git >/dev/null; }
cargo build --release --bins
cargo bench --bench gossip
python3 scripts/bench-converge.py target/release "$@"
