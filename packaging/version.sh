#!/bin/sh
# Prints the package version for the commit checked out, valid for both
# dpkg and rpm and ordered the same way by both:
#   tag v1.2.3                    -> 1.2.3
#   3 commits after v1.2.3        -> 1.2.3+3.gabc1234   (after 1.2.3)
#   tag v1.3.0-rc1                -> 1.3.0~rc1          (before 1.3.0)
#   no tag (or no git)            -> 0.0.0~gitabc1234   (before any release)
# Neither format allows "-" in the version, so git's are replaced.
set -eu
cd "$(dirname "$0")/.."

if desc=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
	desc=${desc#v}
	case $desc in
	*-*-g*) # after a tag: TAG-N-gSHA
		sha=${desc##*-g}
		rest=${desc%-g*}
		n=${rest##*-}
		tag=${rest%-*}
		;;
	*) tag=$desc n='' sha='' ;;
	esac
	# A pre-release suffix sorts before the release: ~.
	tag=$(printf '%s' "$tag" | sed 's/-/~/; s/-/./g')
	if [ -n "$n" ]; then
		echo "$tag+$n.g$sha"
	else
		echo "$tag"
	fi
elif sha=$(git rev-parse --short=7 HEAD 2>/dev/null); then
	echo "0.0.0~git$sha"
else
	echo "0.0.0~unknown"
fi
