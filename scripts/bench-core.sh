#!/usr/bin/env bash
# Storage-engine benchmark: gitdb vs the git CLI on the same data, printed as a table.
# Sizes: GITDB_BENCH_KEYS (default 100000), GITDB_BENCH_OPEN_KEYS (default 1000000).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v git >/dev/null || { apt-get update -qq && apt-get install -y -qq git >/dev/null; }
exec cargo bench --bench core "$@"
