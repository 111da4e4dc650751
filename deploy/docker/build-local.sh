#!/usr/bin/env bash
# Build deploy/docker/Dockerfile without a Docker daemon and smoke-test the image.
#
# buildah (Debian's package) runs the Dockerfile's steps with chroot isolation on vfs storage.
# The base is made from Debian bookworm's packages with mmdebstrap (python3 3.11, python3-venv,
# ca-certificates) and passed as BASE, standing in for python:3.11-slim-bookworm, which this
# machine cannot pull (no registry but Debian's, PyPI's and npm's). Every other step is the
# Dockerfile's own: the lock installed with --require-hashes from PyPI, this checkout installed
# without deps, `pip check`, the runtime stage, the HEALTHCHECK, the user. Then the image is run
# (buildah run): `governor --version`, `check-config` on a mounted config, and `governor run`
# against the emulator on the host's loopback, checked by the image's own HEALTHCHECK command.
#
# Needs root, buildah and mmdebstrap (apt-get install buildah mmdebstrap).
# Usage: deploy/docker/build-local.sh   (WORK=/var/tmp/governor-image by default;
#        GOVERNOR=path/to/governor for the host's emulator, default: governor on PATH)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${WORK:-/var/tmp/governor-image}
governor=${GOVERNOR:-governor}
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
base=localhost/governor-base:bookworm
image=localhost/governor:0.1.0
mkdir -p "$work"

# --- the base: Debian's packages only ---
if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
    [ -f "$work/base.tar" ] || mmdebstrap --variant=minbase \
        --include=python3,python3-venv,ca-certificates bookworm "$work/base.tar"
    ctr=$(buildah from scratch)
    mnt=$(buildah mount "$ctr")
    tar -xf "$work/base.tar" -C "$mnt"
    # This machine reaches PyPI through a TLS-intercepting proxy: the base trusts the machine's
    # CA bundle and pip is pointed at it (local builds only; not part of the Dockerfile).
    cp /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/ca-certificates.crt"
    buildah umount "$ctr" >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt "$ctr"
    buildah commit --quiet "$ctr" "$base" >/dev/null
    buildah rm "$ctr" >/dev/null
fi

# --- the Dockerfile, as is ---
cd "$repo"
buildah build --quiet --layers=false --format docker --network host -f deploy/docker/Dockerfile \
    --build-arg BASE="$base" -t "$image" .
buildah inspect --type image --format \
    'user={{.OCIv1.Config.User}} entrypoint={{.OCIv1.Config.Entrypoint}} cmd={{.OCIv1.Config.Cmd}} volumes={{.OCIv1.Config.Volumes}} ports={{.OCIv1.Config.ExposedPorts}}' \
    "$image"
buildah inspect --type image --format 'healthcheck={{.Docker.Config.Healthcheck}}' "$image"

# --- run it ---
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
emu_port=$(free_port)
gov_port=$(free_port)
token=image-test-token
cfg=$work/governor.yaml
cat >"$cfg" <<YAML
api: {base_url: "http://127.0.0.1:$emu_port/v2", timeout_s: 5}
namespaces: [my-org]
manage: {tags: [governor]}
loop: {tick_interval_s: 2}
server: {listen: "127.0.0.1:$gov_port"}
YAML
chmod 0644 "$cfg"
"$governor" emulator --host 127.0.0.1 --port "$emu_port" --token "$token" \
    --scenario examples/emulator-scenario.yaml >"$work/emulator.log" 2>&1 &
emu=$!
ctr=$(buildah from --quiet "$image")
hc_ctr=$(buildah from --quiet "$image")   # a second container: buildah runs one command per container at a time
trap 'kill $emu 2>/dev/null || true; buildah rm "$ctr" "$hc_ctr" >/dev/null 2>&1 || true' EXIT
run() { buildah run --network host -v "$cfg:/etc/governor/governor.yaml:ro" "$@"; }
run "$ctr" -- governor --version
run "$ctr" -- id
run "$ctr" -- governor check-config -c /etc/governor/governor.yaml
# 45 s of `governor run`, then SIGTERM from coreutils' timeout inside the container.
run --env HF_TOKEN="$token" "$ctr" -- timeout --preserve-status 45 governor run -c /etc/governor/governor.yaml \
    </dev/null >"$work/governor.log" 2>&1 &
gov=$!
hc=(python3 -c "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=4)")
ok=""
for _ in $(seq 60); do
    if run --env HEALTHCHECK_URL="http://127.0.0.1:$gov_port/healthz" "$hc_ctr" -- "${hc[@]}" 2>/dev/null; then
        ok=1; break
    fi
    sleep 1
done
echo "HEALTHCHECK command against the running image: $([ -n "$ok" ] && echo healthy || echo UNHEALTHY)"
python3 -c "import urllib.request; t=urllib.request.urlopen('http://127.0.0.1:$gov_port/metrics').read().decode(); print([l for l in t.splitlines() if l.startswith('governor_ticks_total')])"
wait $gov && echo "governor run: exit 0 after SIGTERM" || echo "governor run: exit $?"
tail -2 "$work/governor.log"
echo "HEALTHCHECK after it stopped: $(run --env HEALTHCHECK_URL="http://127.0.0.1:$gov_port/healthz" "$hc_ctr" -- "${hc[@]}" >/dev/null 2>&1 && echo healthy || echo unhealthy)"
[ -n "$ok" ]
