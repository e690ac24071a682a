#!/usr/bin/env bash
# The README's first command: runs the agent end to end on this machine, no AWS account needed.
# Starts hubsim (the loopback Security Hub stand-in, checking SigV4 signatures), copies
# examples/spool into a temporary spool, runs `securityhub-agent run --once` against it with
# test credentials, then shows what Security Hub received and what went to failed/.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --bins --workspace
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null || echo target)
bin="$target_dir/debug"

work=$(mktemp -d)
trap 'kill "$hub_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/spool"
cp examples/spool/* "$work/spool/"

"$bin/hubsim" --listen 127.0.0.1:0 --addr-file "$work/addr" \
  --access-key AKIDDEMO --secret-key demo-secret --report > "$work/report.txt" 2> "$work/hubsim.log" &
hub_pid=$!
for _ in $(seq 100); do [ -s "$work/addr" ] && break; sleep 0.05; done
[ -s "$work/addr" ] || { echo "hubsim did not start:"; cat "$work/hubsim.log"; exit 1; }

cat > "$work/config.toml" <<TOML
[spool]
dir = "$work/spool"
[batch]
flush_interval = "100ms"
[destination]
region = "us-east-1"
endpoint_url = "http://$(cat "$work/addr")"
account_id = "123456789012"
[status]
path = "$work/status.json"
TOML

echo "== securityhub-agent run --once (spool: examples/spool, Security Hub: hubsim at $(cat "$work/addr"))"
AWS_ACCESS_KEY_ID=AKIDDEMO AWS_SECRET_ACCESS_KEY=demo-secret AWS_EC2_METADATA_DISABLED=true \
  "$bin/securityhub-agent" run --once --config "$work/config.toml"

kill "$hub_pid"; wait "$hub_pid" || true
echo
echo "== what Security Hub (hubsim) received"
cat "$work/report.txt"
echo
echo "== left in the spool: $(find "$work/spool" -maxdepth 1 -type f | wc -l) files"
echo "== failed/ (quarantined files and rejected findings, each with a report):"
for report in "$work"/spool/failed/*.error.json; do
  echo "-- $(basename "$report")"
  cat "$report"; echo
done
