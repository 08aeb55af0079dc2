#!/usr/bin/env bash
# Renders an HTML report to a PNG with Debian's headless Chromium (docs/report.png).
#
#   scripts/render-report-png.sh REPORT.html [OUT.png]
#
# Chromium comes from Debian's package (`apt-get install chromium`); it is started with no
# network access of its own (the report is self-contained: no external assets to fetch).
set -euo pipefail
html="$(realpath "${1:?usage: $0 REPORT.html [OUT.png]}")"
out="$(realpath -m "${2:-docs/report.png}")"
browser="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$browser" ]; then
    echo "chromium not found: apt-get install chromium" >&2
    exit 1
fi
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" --window-size=1280,1600 \
    --screenshot="$out" "file://$html" >/dev/null 2>&1
echo "wrote $out"
