#!/usr/bin/env bash
# Builds the image from deploy/Dockerfile and runs a pypsrp session through it (issue 15).
#
#   deploy/container-test.sh
#
# 1. builds the static binary on the host (glibc, `+crt-static`; no base image can be pulled);
# 2. assembles the build context (binary, the host's CA bundle, an empty state dir) and
#    builds the image with podman;
# 3. checks the image: numeric non-root user, no shell, statically linked;
# 4. runs `exo-authproxy sandbox --mode rest` in it on the host network with a read-only
#    root filesystem and no capabilities, `exo-authproxy wait`s for it (from the image too),
#    runs one pypsrp session through it (tests/interop/proxy_session.py, in the venv the
#    integration tests make under target/interop-venv), stops it with `exo-authproxy
#    shutdown`, and requires the container to exit 0.
#
# Needs podman and runc (Debian: apt-get install -y podman runc) and, on hosts without cgroup
# delegation and ulimit rights, /etc/containers/containers.conf with
# `[containers] default_ulimits = []`. Without podman: with CI=true a failure, otherwise a
# loud SKIPPED line and exit 0.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
started=$SECONDS
say() { echo "container-test: $*"; }
fail() { say "FAILED: $*" >&2; exit 1; }

if ! command -v podman >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then
        fail "podman is not installed (apt-get install -y podman runc); CI=true requires the image test"
    fi
    say "SKIPPED: podman is not installed (apt-get install -y podman runc): the image was NOT built or tested"
    exit 0
fi
podman=(podman --runtime runc --cgroup-manager=cgroupfs)

target=x86_64-unknown-linux-gnu
say "building the static binary ($target, +crt-static)"
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" --bin exo-authproxy
bin=$root/target/$target/release/exo-authproxy
if ldd "$bin" 2>/dev/null | grep -q '=>'; then
    fail "$bin is dynamically linked: ldd lists $(ldd "$bin" | tr '\n' ' ')"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/exo-authproxy-ct.XXXXXX")
name=exo-authproxy-ct-$$
image=localhost/exo-authproxy:container-test
cleanup() {
    "${podman[@]}" rm -f -t 0 "$name" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/context/state" "$work/tmp"
cp "$bin" "$work/context/exo-authproxy"
cp /etc/ssl/certs/ca-certificates.crt "$work/context/ca-certificates.crt"
say "building $image"
"${podman[@]}" build --quiet -f deploy/Dockerfile -t "$image" "$work/context" >/dev/null

user=$("${podman[@]}" image inspect --format '{{.Config.User}}' "$image")
[ "$user" = "65532:65532" ] || fail "the image runs as '$user', not 65532:65532"
if "${podman[@]}" run --rm --entrypoint /bin/sh "$image" -c true >/dev/null 2>&1; then
    fail "the image has a shell"
fi
version=$("${podman[@]}" run --rm --read-only "$image" --version)
say "image runs: $version"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# /tmp from the host: the sandbox writes its certificates there, and the client on the host
# must trust the listener certificate. Writable by the image's user only through the sticky bit.
chmod 1777 "$work/tmp"
say "starting the sandbox in the container on 127.0.0.1:$port (host network, read-only root)"
"${podman[@]}" run -d --name "$name" --network host --read-only --cap-drop ALL \
    --security-opt no-new-privileges -v "$work/tmp:/tmp" \
    "$image" sandbox --mode rest --listen "127.0.0.1:$port" >/dev/null

# The banner names the admin address (port 0 in the container = the host's) and the
# listener certificate.
admin=""
for _ in $(seq 1 240); do
    logs=$("${podman[@]}" logs "$name" 2>/dev/null || true)
    admin=$(sed -n 's|^ *health *http://\([^/]*\)/healthz.*|\1|p' <<<"$logs" | head -n1)
    [ -n "$admin" ] && break
    state=$("${podman[@]}" inspect --format '{{.State.Status}}' "$name" 2>/dev/null || echo gone)
    [ "$state" = running ] || [ "$state" = created ] || fail "the container stopped ($state):
$logs"
    sleep 0.5
done
[ -n "$admin" ] || fail "no banner from the sandbox within 120 s:
$("${podman[@]}" logs "$name" 2>&1)"
cert=$(sed -n 's|^ *certificate *\(/tmp/.*\)$|\1|p' <<<"$logs" | head -n1)
[ -n "$cert" ] || fail "the banner names no certificate under /tmp:
$logs"
cert=$work/tmp/${cert#/tmp/}

say "waiting for the proxy (exo-authproxy wait --admin $admin, from the image)"
"${podman[@]}" run --rm --network host --read-only "$image" wait --admin "$admin" --timeout 60s

python=$root/target/interop-venv/bin/python
if [ ! -x "$python" ] || ! ls "$root"/target/interop-venv/.ready-* >/dev/null 2>&1; then
    # The same venv the integration tests make (tests/it/support/python.rs).
    say "creating the pypsrp venv in target/interop-venv"
    pypsrp=$(sed -n 's/^pub const PYPSRP: &str = "\(.*\)";/\1/p' tests/it/support/python.rs)
    rm -rf "$root/target/interop-venv"
    python3 -m venv "$root/target/interop-venv"
    "$python" -m pip install --quiet --disable-pip-version-check "$pypsrp"
    echo "$pypsrp" >"$root/target/interop-venv/.ready-${pypsrp/==/-}"
fi

say "one pypsrp session through the container"
result=$(PROXY_HOST=127.0.0.1 PROXY_PORT=$port PROXY_USER=reporting PROXY_PASSWORD=sandbox \
    PROXY_CA=$cert MAILBOXES=5 "$python" tests/interop/proxy_session.py) ||
    fail "the pypsrp session failed: $result"
say "pypsrp: $result"
"$python" -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r.get("ok") and r.get("opened") and r.get("mailboxes") == 5 and r.get("org") and not r.get("org_errors") and not r.get("mailbox_errors") else 1)' "$result" ||
    fail "the pypsrp session did not succeed: $result"

say "stopping it (exo-authproxy shutdown --admin $admin)"
"${podman[@]}" run --rm --network host --read-only "$image" shutdown --admin "$admin"
code=$(timeout 60 "${podman[@]}" wait "$name") || fail "the container did not exit after shutdown"
[ "$code" = 0 ] || fail "the container exited with $code after shutdown:
$("${podman[@]}" logs "$name" 2>&1 | tail -n 20)"
say "ok: image built, pypsrp session through the container, clean shutdown (exit 0) in $((SECONDS - started)) s"
