#!/usr/bin/env bash
# One command for BENCHMARKS.md: release builds of the agent and hubsim, a venv with boto3 for
# the baseline (cached in /var/tmp), then bench/compare.py. Extra arguments go to compare.py,
# e.g. --findings 50000 --reps 1 for a quick look. Results: stdout (Markdown) and
# bench/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin securityhub-agent
cargo build --release -p hubsim --bin hubsim
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
venv=${BENCH_VENV:-/var/tmp/securityhub-agent-bench-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import boto3' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'boto3==1.44.8'
fi
exec python3 bench/compare.py --agent "$target_dir/release/securityhub-agent" \
    --hubsim "$target_dir/release/hubsim" --python "$venv/bin/python" --out bench/results.json "$@"
