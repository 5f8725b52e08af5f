#!/usr/bin/env bash
# Builds the single executable dist/firewall-controller (bun build --compile).
set -euo pipefail
cd "$(dirname "$0")"
BUN=${BUN:-./node_modules/.bin/bun}
[ -x "$BUN" ] || { echo "build.sh: $BUN not found; run npm ci first" >&2; exit 1; }
mkdir -p dist
"$BUN" build --compile --minify-whitespace --sourcemap=inline main.ts --outfile dist/firewall-controller
