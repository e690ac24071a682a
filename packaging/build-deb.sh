#!/usr/bin/env bash
# Builds target/debian/securityhub-agent_VERSION_ARCH.deb: release binary, hardened unit
# (enabled and started on install, restarted on upgrade, stopped on remove), config as a
# conffile, man page and shell completions generated from the CLI. Needs cargo-deb:
#   cargo install cargo-deb
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin securityhub-agent
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
assets="$target_dir/release/assets"
mkdir -p "$assets"
bin="$target_dir/release/securityhub-agent"
"$bin" man | gzip -9n > "$assets/securityhub-agent.1.gz"
"$bin" completions bash > "$assets/securityhub-agent.bash"
"$bin" completions zsh > "$assets/_securityhub-agent"
"$bin" completions fish > "$assets/securityhub-agent.fish"
cargo deb --no-build --no-strip "$@"
ls -l "$target_dir"/debian/*.deb
