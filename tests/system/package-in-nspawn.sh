#!/usr/bin/env bash
# End-to-end test of the .deb or .rpm in a real booted systemd: a Debian rootfs (debootstrap,
# cached outside the clone) booted with systemd-nspawn; inside, the package is installed,
# configured and operated as a user would, while hubsim runs on the host's loopback (nspawn
# shares the host network). The exit status is the verdict.
#
#   tests/system/package-in-nspawn.sh PATH/TO/securityhub-agent_*.deb
#   tests/system/package-in-nspawn.sh PATH/TO/securityhub-agent-*.rpm   (rpm -i --nodeps)
#
# Needs root, debootstrap and systemd-nspawn (Debian: debootstrap systemd-container). Exit 77
# (the automake convention for "skipped") when this machine cannot run it: not root, a tool
# missing, or no Debian mirror for debootstrap. Any other non-zero status is a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

cache=${SHA_ROOTFS_CACHE:-/var/tmp/securityhub-agent-rootfs}
rootfs="$cache/bookworm-systemd-rpm"
machine="sha-e2e-$$"
work=$(mktemp -d /tmp/sha-e2e.XXXXXX)
hubsim_pid=
nspawn_pid=

say() { printf '== %s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    if [ -n "${leader:-}" ]; then
        echo "--- journal of securityhub-agent in the container:" >&2
        inside journalctl -u securityhub-agent --no-pager -n 60 >&2 || true
    fi
    exit 1
}
cleanup() {
    if [ -n "${leader:-}" ]; then inside systemctl poweroff >/dev/null 2>&1 || true; fi
    if [ -n "$nspawn_pid" ]; then
        for _ in $(seq 50); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
        kill "$nspawn_pid" 2>/dev/null || true
    fi
    if [ -n "$hubsim_pid" ]; then kill "$hubsim_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# Runs a command inside the booted container (all its namespaces, as root).
inside() { nsenter --target "$leader" --all -- "$@"; }
# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
    local seconds=$1; shift
    for _ in $(seq $((seconds * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    return 1
}

skip() { printf 'SKIPPED: %s\n' "$*" >&2; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, systemd-nspawn)"
for tool in debootstrap systemd-nspawn nsenter python3; do
    command -v "$tool" >/dev/null || skip "needs $tool"
done

pkg=${1:?usage: $0 PACKAGE.deb|PACKAGE.rpm}
[ -f "$pkg" ] || fail "no package at $pkg"
case "$pkg" in
    *.deb) kind=deb ;;
    *.rpm) kind=rpm ;;
    *) fail "$pkg is neither .deb nor .rpm" ;;
esac
say "package: $pkg ($(du -h "$pkg" | cut -f1))"

if [ ! -x "$rootfs/usr/lib/systemd/systemd" ]; then
    say "debootstrap bookworm into $rootfs (cached for later runs)"
    mkdir -p "$cache"
    rm -rf "$rootfs.partial"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,adduser,procps,rpm \
        bookworm "$rootfs.partial" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log"; skip "debootstrap could not build the rootfs (no Debian mirror?)"; }
    mv "$rootfs.partial" "$rootfs"
fi

say "starting hubsim on the host's loopback"
cargo build -q -p hubsim --bin hubsim
hubsim_bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/hubsim"
"$hubsim_bin" --listen 127.0.0.1:0 --addr-file "$work/hubsim.addr" \
    --access-key AKIDE2ETEST --secret-key e2e-secret >"$work/hubsim.log" 2>&1 &
hubsim_pid=$!
wait_for 20 test -s "$work/hubsim.addr" || fail "hubsim did not start"
hub="http://$(cat "$work/hubsim.addr")"

say "booting systemd in the container"
mkdir -p "$work/share"
cp "$pkg" "$work/share/securityhub-agent.$kind"
cp "$root/../shared/fixtures/scanners/trivy/alpine-310.json" "$work/share/trivy.json"
systemd-nspawn --boot --register=no --keep-unit --volatile=overlay --quiet \
    --directory="$rootfs" --machine="$machine" --bind-ro="$work/share:/mnt/e2e" \
    >"$work/console.log" 2>&1 </dev/null &
nspawn_pid=$!
leader=
for _ in $(seq 100); do
    leader=$(pgrep -P "$nspawn_pid" -x systemd || true)
    [ -n "$leader" ] && break
    sleep 0.1
done
[ -n "$leader" ] || { cat "$work/console.log"; fail "the container did not start"; }
wait_for 60 sh -c "nsenter --target $leader --all -- systemctl is-system-running | grep -qE 'running|degraded'" \
    || fail "systemd did not finish booting"
say "booted: $(inside systemctl is-system-running)"

if [ "$kind" = deb ]; then
    say "apt install ./securityhub-agent.deb"
    inside apt-get install -y -q /mnt/e2e/securityhub-agent.deb >"$work/install.log" 2>&1 \
        || { cat "$work/install.log"; fail "apt-get install"; }
else
    say "rpm -i --nodeps securityhub-agent.rpm (Debian's rpm: no RPM database of the system's packages)"
    inside rpm -i --nodeps /mnt/e2e/securityhub-agent.rpm >"$work/install.log" 2>&1 \
        || { cat "$work/install.log"; fail "rpm -i"; }
fi
inside test -x /usr/bin/securityhub-agent || fail "binary not installed"
inside test -f /usr/share/man/man1/securityhub-agent.1.gz || fail "man page not installed"
inside test -f /usr/share/bash-completion/completions/securityhub-agent || fail "bash completion not installed"
inside systemctl is-enabled securityhub-agent >/dev/null || fail "unit not enabled on install"
inside getent group securityhub-agent >/dev/null || fail "group not created"
[ "$(inside stat -c '%a %U %G' /var/spool/securityhub-agent)" = "2770 securityhub-agent securityhub-agent" ] \
    || fail "spool is $(inside stat -c '%a %U %G' /var/spool/securityhub-agent), want 2770 securityhub-agent securityhub-agent"
[ "$(inside stat -c '%a %U %G' /etc/securityhub-agent/config.toml)" = "640 root securityhub-agent" ] \
    || fail "config is $(inside stat -c '%a %U %G' /etc/securityhub-agent/config.toml)"

say "configure: destination = hubsim on the host; credentials in a drop-in"
# As a user would: fill in the keys under the shipped file's [destination] table.
inside sed -i "/^\[destination\]/a region = \"eu-west-1\"\naccount_id = \"111122223333\"\nendpoint_url = \"$hub\"" \
    /etc/securityhub-agent/config.toml
inside securityhub-agent check-config --config /etc/securityhub-agent/config.toml >/dev/null \
    || fail "the edited config does not pass check-config"
inside mkdir -p /etc/systemd/system/securityhub-agent.service.d
inside sh -c 'cat > /etc/systemd/system/securityhub-agent.service.d/credentials.conf' <<'EOF'
[Service]
Environment=AWS_ACCESS_KEY_ID=AKIDE2ETEST AWS_SECRET_ACCESS_KEY=e2e-secret AWS_EC2_METADATA_DISABLED=true
EOF
inside systemctl daemon-reload
inside systemctl restart securityhub-agent || fail "systemctl restart"
wait_for 20 sh -c "nsenter --target $leader --all -- systemctl is-active securityhub-agent | grep -qx active" \
    || fail "the service is not active"
say "active; main pid runs as $(inside ps -o user= -p "$(inside systemctl show -p MainPID --value securityhub-agent)")"

say "a scanner user in the group drops a Trivy report into the spool"
inside useradd --create-home --groups securityhub-agent scanner
inside runuser -u scanner -- sh -c \
    'cp /mnt/e2e/trivy.json /var/spool/securityhub-agent/.alpine.json.tmp && mv /var/spool/securityhub-agent/.alpine.json.tmp /var/spool/securityhub-agent/alpine.json'
expected=$(inside securityhub-agent validate --output json /mnt/e2e/trivy.json 2>/dev/null | wc -l)
[ "$expected" -gt 0 ] || fail "validate found no findings in the report"
wait_for 30 sh -c "[ \"\$(python3 -c 'import json,urllib.request; print(len(json.load(urllib.request.urlopen(\"$hub/_hubsim/findings\"))))')\" -ge $expected ]" \
    || fail "findings did not arrive at hubsim (want $expected)"
wait_for 10 sh -c "! nsenter --target $leader --all -- test -e /var/spool/securityhub-agent/alpine.json" \
    || fail "the delivered file is still in the spool"
say "$expected findings from the Trivy report arrived; the file is gone from the spool"

say "systemctl reload applies a changed rate"
inside sed -i 's/^requests_per_second = .*/requests_per_second = 3.0/' /etc/securityhub-agent/config.toml
inside grep -q '^requests_per_second = 3.0' /etc/securityhub-agent/config.toml || fail "the example config has no requests_per_second line"
inside systemctl reload securityhub-agent || fail "systemctl reload"
wait_for 20 sh -c "nsenter --target $leader --all -- securityhub-agent status --config /etc/securityhub-agent/config.toml | grep -q '3.00 requests/s allowed'" \
    || { inside securityhub-agent status --config /etc/securityhub-agent/config.toml || true; fail "the reloaded rate does not show in status"; }
inside systemctl is-active securityhub-agent >/dev/null || fail "not active after reload"

say "systemctl stop drains and stops"
inside systemctl stop securityhub-agent
state=$(inside systemctl show -p ActiveState --value securityhub-agent)
[ "$state" = inactive ] || fail "after stop the unit is $state"
inside journalctl -u securityhub-agent --no-pager | grep -q "stopped" || fail "no 'stopped' line in the journal"

if [ "$kind" = deb ]; then
    say "apt remove keeps the configuration; purge removes it, the user and the group"
    inside apt-get remove -y -q securityhub-agent >"$work/remove.log" 2>&1 || { cat "$work/remove.log"; fail "apt-get remove"; }
    inside test ! -e /usr/bin/securityhub-agent || fail "binary left after remove"
    inside test -f /etc/securityhub-agent/config.toml || fail "config removed by remove (it is a conffile)"
    inside apt-get purge -y -q securityhub-agent >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "apt-get purge"; }
    inside test ! -e /etc/securityhub-agent || fail "config left after purge"
else
    say "rpm -e removes the package, keeps the edited config as .rpmsave, removes the user and group"
    inside rpm -e securityhub-agent >"$work/remove.log" 2>&1 || { cat "$work/remove.log"; fail "rpm -e"; }
    inside test ! -e /usr/bin/securityhub-agent || fail "binary left after rpm -e"
    inside test -f /etc/securityhub-agent/config.toml.rpmsave || fail "the edited config was not kept as .rpmsave"
fi
! inside getent passwd securityhub-agent >/dev/null || fail "user left after removal"
! inside getent group securityhub-agent >/dev/null || fail "group left after removal"
inside systemctl cat securityhub-agent >/dev/null 2>&1 && fail "the unit is still known to systemd"

say "PASS ($kind): install, configure, deliver, reload, stop and remove in a booted systemd"
