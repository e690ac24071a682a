#!/usr/bin/env bash
# Builds target/rpm/securityhub-agent-VERSION-1.ARCH.rpm with rpmbuild (Debian: apt install rpm)
# from the release binary and the assets packaging/build-deb.sh generates (man page,
# completions). Run packaging/build-deb.sh first, or pass --build to build the binary here.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
version=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print([p for p in json.load(sys.stdin)["packages"] if p["name"]=="securityhub-agent"][0]["version"])')
bin="$target_dir/release/securityhub-agent"
if [ "${1:-}" = "--build" ] || [ ! -x "$bin" ]; then
    cargo build --release --bin securityhub-agent
fi
staging="$target_dir/rpm/SOURCES"
rm -rf "$staging" && mkdir -p "$staging"
cp "$bin" systemd/securityhub-agent.service config.example.toml README.md "$staging/"
"$bin" man | gzip -9n > "$staging/securityhub-agent.1.gz"
"$bin" completions bash > "$staging/securityhub-agent.bash"
"$bin" completions zsh > "$staging/_securityhub-agent"
"$bin" completions fish > "$staging/securityhub-agent.fish"
rpmbuild -bb packaging/rpm/securityhub-agent.spec \
    --define "_topdir $target_dir/rpm" --define "_sourcedir $staging" \
    --define "version $version" --define "arch $(uname -m)" \
    --define "_rpmdir $target_dir/rpm" --define "_build_id_links none" \
    --define "__os_install_post %{nil}" --define "debug_package %{nil}" --quiet
ls -l "$target_dir"/rpm/*/securityhub-agent-*.rpm
