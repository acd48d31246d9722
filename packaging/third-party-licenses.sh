#!/bin/bash
# Prints the license of every Go module linked into pullguard for GOARCH $1
# (and the Go standard library's), for /usr/share/doc/pullguard: the MIT and
# BSD licenses of some of them require their notice in binary copies.
# Fails if a module has no license file, rather than ship without it.
set -euo pipefail
arch=${1:?usage: third-party-licenses.sh GOARCH}
cd "$(dirname "$0")/.."

print() { # NAME VERSION FILE...
	local name=$1 version=$2
	shift 2
	printf '%s\n%s %s\n%s\n\n' "========================================================================" "$name" "$version" "========================================================================"
	for f in "$@"; do
		cat "$f"
		echo
	done
}

print "Go standard library" "$(go env GOVERSION)" "$(go env GOROOT)/LICENSE"
GOOS=linux GOARCH=$arch CGO_ENABLED=0 go list -deps \
	-f '{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}} {{.Dir}}{{end}}{{end}}' ./cmd/pullguard |
	sort -u | while read -r path version dir; do
	mapfile -t files < <(find "$dir" -maxdepth 1 -type f \( -iname 'licen[cs]e*' -o -iname 'copying*' -o -iname 'notice*' \) | sort)
	if [ ${#files[@]} -eq 0 ]; then
		echo "third-party-licenses.sh: no license file in $path $version ($dir)" >&2
		exit 1
	fi
	print "$path" "$version" "${files[@]}"
done
