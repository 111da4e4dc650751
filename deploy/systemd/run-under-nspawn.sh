#!/usr/bin/env bash
# Run deploy/systemd/governor.service under a real systemd and record what it did.
#
# A Debian bookworm root made from Debian's packages (mmdebstrap), Governor installed in it from
# deploy/docker/requirements.lock plus this checkout, booted with systemd-nspawn (systemd as PID 1
# of the container). The unit talks to `governor emulator` on the host's loopback (the container
# shares the host's network namespace). Inside, governor-check.service drives the checks
# (readiness, the live `systemd-analyze security`, the process's credentials, the watchdog, a
# configuration error with RestartPreventExitStatus=2, a clean stop) and powers the container off;
# its log is written to $WORK/results/check.log.
#
# Needs root, mmdebstrap and systemd-container (apt-get install mmdebstrap systemd-container).
# Usage: deploy/systemd/run-under-nspawn.sh   (WORK=/var/tmp/governor-nspawn by default;
#        GOVERNOR=path/to/governor for the host's emulator, default: governor on PATH)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${WORK:-/var/tmp/governor-nspawn}
root=$work/rootfs
governor=${GOVERNOR:-governor}
token=nspawn-test-token
mkdir -p "$work/results"
rm -f "$work/results/check.log"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
emu_port=$(free_port)
gov_port=$(free_port)

# --- the root file system, from Debian's packages ---
if [ ! -x "$root/usr/lib/systemd/systemd" ]; then
    mmdebstrap --variant=minbase \
        --include=systemd,systemd-sysv,dbus,python3,python3-venv,ca-certificates \
        bookworm "$root"
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"

# --- Governor, as the unit expects it: /opt/governor/venv/bin/governor ---
rm -rf "$root/src" && mkdir -p "$root/src"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard \
    | grep -zE '^(pyproject.toml|README.md|controller/|policies/|deploy/)' \
    | xargs -0 tar -cf - ) | tar -xf - -C "$root/src"
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL  # host-only pip settings
[ -x "$root/opt/governor/venv/bin/python" ] || chroot "$root" python3 -m venv /opt/governor/venv
chroot "$root" /opt/governor/venv/bin/pip install --quiet --disable-pip-version-check \
    --require-hashes -r /src/deploy/docker/requirements.lock
chroot "$root" /opt/governor/venv/bin/pip install --quiet --disable-pip-version-check \
    --no-deps --no-build-isolation --force-reinstall /src
chroot "$root" /opt/governor/venv/bin/governor --version

# --- the unit, its config and token, exactly as docs/operations.md installs them ---
install -d -m 0755 "$root/etc/governor"
cat >"$root/etc/governor/governor.yaml" <<YAML
api: {base_url: "http://127.0.0.1:$emu_port/v2", timeout_s: 5}
namespaces: [my-org]
manage: {tags: [governor]}
loop: {tick_interval_s: 2}
server: {listen: "127.0.0.1:$gov_port"}
YAML
install -m 0600 /dev/null "$root/etc/governor/hf_token"
printf '%s' "$token" >"$root/etc/governor/hf_token"
install -m 0644 "$repo/deploy/systemd/governor.service" "$root/etc/systemd/system/governor.service"
install -m 0755 "$repo/deploy/systemd/nspawn-check.sh" "$root/usr/local/bin/governor-check"
cat >"$root/etc/systemd/system/governor-check.service" <<UNIT
[Unit]
Description=Checks of governor.service (deploy/systemd/run-under-nspawn.sh)
After=multi-user.target
[Service]
Type=oneshot
Environment=GOV_PORT=$gov_port
ExecStart=/usr/local/bin/governor-check
ExecStopPost=/usr/bin/systemctl --no-block poweroff
StandardOutput=journal+console
UNIT
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/governor.service "$root/etc/systemd/system/multi-user.target.wants/"
ln -sf /etc/systemd/system/governor-check.service "$root/etc/systemd/system/multi-user.target.wants/"

# --- the emulator on the host's loopback, then boot ---
"$governor" emulator --host 127.0.0.1 --port "$emu_port" --token "$token" \
    --scenario "$repo/examples/emulator-scenario.yaml" >"$work/results/emulator.log" 2>&1 &
emu=$!
trap 'kill $emu 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$emu_port/v2/', timeout=1)" 2>/dev/null && break
    grep -q "emulator:" "$work/results/emulator.log" && break
    sleep 0.2
done
timeout 600 systemd-nspawn --quiet --register=no --keep-unit --boot --directory="$root" \
    --bind="$work/results:/results" --console=pipe >"$work/results/console.log" 2>&1 || true
cat "$work/results/check.log"
grep -q '^CHECKS DONE' "$work/results/check.log"
