#!/bin/bash
# Builds pullguard's packages: packaging/build.sh VERSION ARCH...
#   VERSION  package version, e.g. from packaging/version.sh
#   ARCH     Go architectures: amd64, arm64
# writes dist/pullguard_VERSION_ARCH.deb and dist/pullguard_VERSION_ARCH.rpm.
# Needs Go and gzip; nfpm (pinned below) and go-md2man (packaging/man.sh)
# are built from the Go module proxy.
#
# Environment:
#   MAINTAINER          "Name <email>" for the package metadata and changelog
#   SOURCE_DATE_EPOCH   timestamp of every file (default: the commit's time),
#                       so that the same commit gives the same packages
#   DIST                output directory (default dist)
set -euo pipefail

NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

usage() {
	echo "usage: $0 VERSION ARCH..." >&2
	exit 2
}
[ $# -ge 2 ] || usage
version=$1
shift
# dpkg and rpm must both accept it: digits first; letters, digits, . + ~;
# no "-" (rpm forbids it, dpkg would read a Debian revision).
if ! [[ $version =~ ^[0-9][A-Za-z0-9.+~]*$ ]]; then
	echo "build.sh: $version is not a version both dpkg and rpm accept (want e.g. 1.2.3, 1.2.3+4.gabc1234, 0.0.0~gitabc1234)" >&2
	exit 2
fi
for arch in "$@"; do
	case $arch in
	amd64 | arm64) ;;
	*) echo "build.sh: unsupported architecture $arch (amd64, arm64)" >&2; exit 2 ;;
	esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dist=${DIST:-dist}
mkdir -p "$dist"
dist=$(cd "$dist" && pwd)
stage=$dist/.stage
export MAINTAINER=${MAINTAINER:-pullguard maintainers <pullguard@example.com>}
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH
export VERSION=$version

rm -rf "$stage"
mkdir -p "$stage/bin" "$dist"

# nfpm, pinned; go install caches it like go run would, and builds it once
# for every package below.
GOBIN=$stage/bin go install "$NFPM"

# gz writes stdin to $1 compressed as dpkg and lintian want it: best
# compression, no name or timestamp in the header (reproducible).
gz() { gzip -9n >"$1"; }

# The binaries. PIE: Go links it internally for linux/amd64 and linux/arm64
# without cgo. The result loads no shared library, but names the system's
# dynamic loader (PT_INTERP) to relocate it, which every glibc host has.
for arch in "$@"; do
	mkdir -p "$stage/$arch"
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -buildmode=pie -trimpath \
		-ldflags "-s -w -X main.version=$version" -o "$stage/$arch/pullguard" ./cmd/pullguard
done

# Architecture-independent files, made once.
common=$stage/common
mkdir -p "$common"
# The completion scripts come from the very command tree that ships: from
# the binary built for this machine's architecture, or one built for it.
hostarch=$(go env GOHOSTARCH)
if [ -x "$stage/$hostarch/pullguard" ]; then
	host=$stage/$hostarch/pullguard
else
	host=$common/pullguard
	CGO_ENABLED=0 go build -trimpath -o "$host" ./cmd/pullguard
fi
"$host" completion bash >"$common/pullguard.bash"
"$host" completion zsh >"$common/_pullguard"
rm -f "$common/pullguard"
# Man pages: written once in Markdown (docs/PAGE.md), rendered by man.sh
# with this version and the commit's date.
date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)
packaging/man.sh "$stage/man" "$version" "$date"
for page in pullguard.8 pullguard-policy.5; do
	gz "$common/$page.gz" <"$stage/man/$page"
done
# Debian changelog (native package): one entry for this version, listing
# the commits since the previous tag.
{
	echo "pullguard ($version) unstable; urgency=medium"
	echo
	prev=$(git describe --tags --abbrev=0 --match 'v[0-9]*' HEAD^ 2>/dev/null || true)
	range=${prev:+$prev..}HEAD
	if git rev-parse HEAD >/dev/null 2>&1; then
		git log -n 50 --no-merges --format='%s' "$range" | while IFS= read -r subject; do
			printf '%s\n' "$subject" | fold -s -w 72 | sed -e 's/ *$//' -e '1s/^/  * /' -e '1!s/^/    /'
		done
	else
		echo "  * Release $version."
	fi
	echo
	echo " -- $MAINTAINER  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gz "$common/changelog.gz"

for arch in "$@"; do
	s=$stage/$arch
	cp "$common"/* "$s"/
	packaging/third-party-licenses.sh "$arch" | gz "$s/THIRD-PARTY-LICENSES.gz"

	for fmt in deb rpm; do
		out=$dist/pullguard_${version}_$arch.$fmt
		if ! log=$(ARCH=$arch STAGE=$s "$stage/bin/nfpm" package --config packaging/nfpm.yaml \
			--packager "$fmt" --target "$out" 2>&1); then
			echo "$log" >&2
			echo "build.sh: nfpm failed for $out" >&2
			exit 1
		fi
		echo "$out"
	done
done
