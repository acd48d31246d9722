#!/bin/bash
# Renders pullguard's man pages from their one source, docs/PAGE.md, with
# go-md2man (built from the Go module proxy, pinned below):
#   packaging/man.sh OUTDIR [VERSION [DATE]]
# writes OUTDIR/pullguard.8 and OUTDIR/pullguard-policy.5. VERSION defaults
# to packaging/version.sh's, DATE (YYYY-MM-DD) to today's. Run by build.sh
# for the packages and by `make man`.
set -euo pipefail

MD2MAN=github.com/cpuguy83/go-md2man/v2@v2.0.7

if [ $# -lt 1 ] || [ $# -gt 3 ]; then
	echo "usage: $0 OUTDIR [VERSION [DATE]]" >&2
	exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
cd "$root"
version=${2:-$(packaging/version.sh)}
date=${3:-$(date -u +%Y-%m-%d)}

# go install caches it as go run would; its own directory, so that nothing
# else named go-md2man on PATH is run.
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
GOBIN=$bin go install "$MD2MAN"

# go-md2man turns hyphenation off with .nh, which an.tmac turns on again at
# every paragraph from the HY register: HY 0 keeps host names, paths and
# references whole, and .ad l sets them ragged right rather than stretched
# (groff warns when it cannot adjust a line around a long reference).
for page in pullguard.8 pullguard-policy.5; do
	sed -e "s/@VERSION@/$version/g" -e "s/@DATE@/$date/g" "docs/$page.md" | "$bin/go-md2man" |
		sed -e '/^\.TH /i .nr HY 0' -e '/^\.TH /a .ad l' >"$out/$page"
done
