#!/bin/bash
# Verifies pullguard's packages for real, on a Debian host, as root:
# builds them, lints the .deb, installs, reinstalls, removes and purges it
# with dpkg, checks the units with systemd-analyze, inspects the .rpm and
# installs it into a scratch root. Prints one line per check and exits
# non-zero if any failed.
#
# dpkg -i is real on this host. The script refuses to run where pullguard
# is already installed or /etc/pullguard exists (it would purge them), and
# purges its own installation however it ends.
#
# Usage: packaging/verify.sh            (from make test, or by hand)
# Environment: KEEP=1 keeps the built packages and the temporary directory.
# Checks below read "condition && condition || { explain; return 1; }":
# the block is the failure branch whichever condition fails.
# shellcheck disable=SC2015
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
failures=0
ok() { printf 'ok    %s\n' "$1"; }
fail() {
	printf 'FAIL  %s\n' "$1"
	if [ -n "${2:-}" ]; then printf '%s\n' "$2" | sed 's/^/      /'; fi
	failures=$((failures + 1))
}
# check NAME COMMAND...: runs COMMAND, prints ok or FAIL with its output.
check() {
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then ok "$name"; else fail "$name" "$out"; fi
}
die() {
	printf 'FAIL  %s\n' "$1"
	exit 1
}

[ "$(id -u)" = 0 ] || die "verify.sh needs root: it installs the package with dpkg (run: sudo $0)"
command -v dpkg >/dev/null && [ -r /etc/debian_version ] || die "verify.sh needs a Debian host (dpkg)"
if dpkg-query -W -f='${Status}' pullguard 2>/dev/null | grep -qv 'not-installed'; then
	die "pullguard is already installed on this host ($(dpkg-query -W -f='${Version} ${Status}' pullguard)); verify.sh would purge it: run it on a host without pullguard"
fi
[ ! -e /etc/pullguard ] || die "/etc/pullguard exists; verify.sh's dpkg -P would delete it: move it away first"
[ ! -e /var/lib/pullguard ] || die "/var/lib/pullguard exists; verify.sh's dpkg -P would delete it: move it away first"

start=$(date +%s)
tmp=$(mktemp -d /tmp/pullguard-verify.XXXXXX)
installed=0
cleanup() {
	if [ "$installed" = 1 ] || dpkg-query -W -f='${Status}' pullguard 2>/dev/null | grep -q 'install\|config-files'; then
		dpkg_locked -P pullguard >/dev/null 2>&1 || true
	fi
	if [ "${KEEP:-}" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# dpkg_locked runs dpkg, waiting for another dpkg or apt (another test
# installing runtimes) to release its lock rather than failing.
dpkg_locked() {
	local out
	for _ in $(seq 1 60); do
		if out=$(dpkg "$@" 2>&1); then
			printf '%s\n' "$out"
			return 0
		fi
		if ! grep -q 'lock' <<<"$out"; then
			printf '%s\n' "$out"
			return 1
		fi
		sleep 2
	done
	printf '%s\n' "$out"
	return 1
}

# --- tools, from Debian's archive, only those missing ---
need=()
command -v lintian >/dev/null || need+=(lintian)
command -v rpm >/dev/null || need+=(rpm)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v deb-systemd-helper >/dev/null || need+=(init-system-helpers)
command -v man >/dev/null || need+=(man-db)
command -v git >/dev/null || need+=(git)
if [ ${#need[@]} -gt 0 ]; then
	if out=$( (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		-o DPkg::Lock::Timeout=120 "${need[@]}") 2>&1); then
		ok "install ${need[*]}"
	else
		die "install ${need[*]}: $out"
	fi
fi

# --- build ---
version=$(packaging/version.sh)
dist=$tmp/dist
if out=$(DIST=$dist packaging/build.sh "$version" amd64 arm64 2>&1); then
	ok "build $version amd64 arm64 ($(($(date +%s) - start)) s)"
else
	fail "build" "$out"
	exit 1
fi
deb=$dist/pullguard_${version}_amd64.deb
rpmf=$dist/pullguard_${version}_amd64.rpm
deb_arm=$dist/pullguard_${version}_arm64.deb
rpm_arm=$dist/pullguard_${version}_arm64.rpm
for f in "$deb" "$rpmf" "$deb_arm" "$rpm_arm"; do
	[ -s "$f" ] || fail "package $(basename "$f") built"
done

# elf_machine FILE: the ELF e_machine of FILE (62 x86-64, 183 aarch64).
elf_machine() { od -An -t u2 -j 18 -N 2 "$1" | tr -d ' '; }

# --- the .deb, before installing ---
lint() {
	# Errors and warnings fail; accepted ones are overridden in the package
	# (packaging/deb/lintian-overrides), each with its reason.
	lintian --fail-on error,warning --display-level '>=warning' "$1" 2>&1 | grep -v 'running with root privileges'
	return "${PIPESTATUS[0]}"
}
check "lintian $(basename "$deb"): no error or warning" lint "$deb"

deb_fields() {
	local want_arch=$1 want_machine=$2 f=$3 x
	x=$(dpkg-deb -f "$f" Package Version Architecture)
	grep -qx "Version: $version" <<<"$x" && grep -qx "Architecture: $want_arch" <<<"$x" || {
		echo "$x"
		return 1
	}
	mkdir -p "$tmp/x-$want_arch" && dpkg-deb --fsys-tarfile "$f" | tar -xf - -C "$tmp/x-$want_arch" ./usr/bin/pullguard
	[ "$(elf_machine "$tmp/x-$want_arch/usr/bin/pullguard")" = "$want_machine" ] || {
		echo "usr/bin/pullguard is not a $want_arch binary"
		return 1
	}
}
check "deb amd64: version, architecture, x86-64 binary" deb_fields amd64 62 "$deb"
check "deb arm64: version, architecture, aarch64 binary" deb_fields arm64 183 "$deb_arm"
printf '      arm64 deb: %s files\n' "$(dpkg-deb -c "$deb_arm" | grep -vc '/$')"

conffiles() {
	local x
	x=$(dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles | sort)
	[ "$x" = "$(printf '/etc/default/pullguard\n/etc/pullguard/policy.yaml')" ] || {
		echo "conffiles: $x"
		return 1
	}
}
check "deb conffiles: /etc/default/pullguard, /etc/pullguard/policy.yaml" conffiles

man_clean() {
	local page out rc=0
	mkdir -p "$tmp/man"
	dpkg-deb --fsys-tarfile "$deb" | tar -xf - -C "$tmp/man" ./usr/share/man
	for page in "$tmp"/man/usr/share/man/man*/*.gz; do
		# What lintian runs: groff warnings at 80 columns.
		out=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$page" 2>&1 >/dev/null)
		if [ -n "$out" ]; then
			echo "$(basename "$page"): $out"
			rc=1
		fi
		if ! man -l "$page" 2>/dev/null | grep -q '^NAME'; then
			echo "$(basename "$page") renders no NAME section"
			rc=1
		fi
	done
	return $rc
}
check "man pages render without groff warnings" man_clean

# --- the units, from the source tree, without installing ---
# systemd-analyze verify wants the binary (ExecStart=) and the targets the
# units depend on: a scratch root holding the host's units, /bin/kill and
# the built binary gives it both, with nothing installed on the host.
unit_root() {
	local r=$tmp/unitroot
	mkdir -p "$r/usr/bin" "$r/usr/lib/systemd"
	ln -sfn usr/bin "$r/bin"
	cp -a /usr/lib/systemd/system "$r/usr/lib/systemd/"
	cp /usr/bin/kill "$r/usr/bin/kill"
	cp "$tmp/x-amd64/usr/bin/pullguard" "$r/usr/bin/pullguard"
	cp systemd/pullguard.service systemd/pullguard-authz.socket "$r/usr/lib/systemd/system/"
	echo "$r"
}
verify_units() {
	local out
	# verify exits 0 on unknown keys and bad values, which it only prints:
	# any output is a failure.
	out=$(systemd-analyze verify --man=no --root="$(unit_root)" pullguard.service pullguard-authz.socket 2>&1)
	local rc=$?
	[ $rc = 0 ] && [ -z "$out" ] || {
		echo "$out"
		return 1
	}
}
check "systemd-analyze verify (source units, scratch root)" verify_units

# The exposure score, 0 (safe) to 10: at most 2.5.
security_out=$(systemd-analyze security --offline=true --no-pager systemd/pullguard.service 2>&1)
exposure=$(sed -n 's/.*Overall exposure level for pullguard.service: \([0-9.]*\).*/\1/p' <<<"$security_out")
if [ -n "$exposure" ] && awk -v e="$exposure" 'BEGIN { exit !(e <= 2.5) }'; then
	ok "systemd-analyze security --offline: exposure $exposure (<= 2.5)"
else
	fail "systemd-analyze security --offline: exposure ${exposure:-?} (<= 2.5)" "$(grep -v '✓' <<<"$security_out")"
fi

catalog() {
	local r=$tmp/catalogroot n want
	mkdir -p "$r/usr/lib/systemd/catalog"
	cp packaging/pullguard.catalog "$r/usr/lib/systemd/catalog/"
	journalctl --root="$r" --update-catalog 2>&1 || return 1
	want=$(grep -c '^-- ' packaging/pullguard.catalog)
	n=$(journalctl --root="$r" --list-catalog 2>/dev/null | grep -c 'pullguard: ')
	[ "$n" = "$want" ] || {
		echo "journalctl lists $n of the catalog's $want entries"
		return 1
	}
}
check "journald catalog compiles, all entries listed" catalog

# --- install the .deb for real ---
if out=$(dpkg_locked -i "$deb"); then
	installed=1
	ok "dpkg -i $(basename "$deb")"
else
	fail "dpkg -i $(basename "$deb")" "$out"
	exit 1
fi

listed() {
	local l p missing=0
	l=$(dpkg -L pullguard)
	for p in /usr/bin/pullguard /etc/pullguard /etc/pullguard/policy.yaml /etc/pullguard/policy.d \
		/etc/default/pullguard /usr/lib/systemd/system/pullguard.service \
		/usr/lib/systemd/system/pullguard-authz.socket /usr/lib/systemd/catalog/pullguard.catalog \
		/usr/share/man/man8/pullguard.8.gz /usr/share/man/man5/pullguard-policy.5.gz \
		/usr/share/bash-completion/completions/pullguard /usr/share/zsh/vendor-completions/_pullguard \
		/usr/share/doc/pullguard/copyright /usr/share/doc/pullguard/changelog.gz \
		/usr/share/doc/pullguard/THIRD-PARTY-LICENSES.gz /usr/share/lintian/overrides/pullguard; do
		grep -qx "$p" <<<"$l" || {
			echo "dpkg -L does not list $p"
			missing=1
		}
	done
	if grep -q '^/etc/sysconfig' <<<"$l"; then
		echo "the deb ships /etc/sysconfig"
		missing=1
	fi
	return $missing
}
check "dpkg -L lists every file" listed

modes() {
	local rc=0 p want got
	while read -r p want; do
		got=$(stat -c '%a %U:%G %F' "$p" 2>&1)
		[ "$got" = "$want" ] || {
			echo "$p: $got, want $want"
			rc=1
		}
	done <<'EOF'
/usr/bin/pullguard 755 root:root regular file
/etc/pullguard 755 root:root directory
/etc/pullguard/policy.d 755 root:root directory
/etc/pullguard/policy.yaml 644 root:root regular file
/etc/default/pullguard 644 root:root regular file
/usr/lib/systemd/system/pullguard.service 644 root:root regular file
/usr/lib/systemd/system/pullguard-authz.socket 644 root:root regular file
/usr/lib/systemd/catalog/pullguard.catalog 644 root:root regular file
/usr/share/man/man8/pullguard.8.gz 644 root:root regular file
EOF
	return $rc
}
check "installed files' modes and owners" modes

runs() {
	local out
	out=$(/usr/bin/pullguard version) && grep -qF "$version" <<<"$out" || {
		echo "pullguard version: $out"
		return 1
	}
	# The installed policy, with its drop-in directory, exactly as the
	# daemon loads it (root-owned, so no --insecure-policy-permissions).
	out=$(/usr/bin/pullguard policy validate 2>&1) && grep -q 'mode=audit' <<<"$out" || {
		echo "pullguard policy validate: $out"
		return 1
	}
	out=$(/usr/bin/pullguard check nginx:1.25 2>&1)
	[ $? = 1 ] && grep -q '^DENY' <<<"$out" || {
		echo "pullguard check with the installed (empty, default deny) policy: $out"
		return 1
	}
}
check "installed binary runs; installed policy loads in audit mode" runs

enabled() {
	local rc=0 l
	for l in /etc/systemd/system/multi-user.target.wants/pullguard.service \
		/etc/systemd/system/sockets.target.wants/pullguard-authz.socket; do
		[ -L "$l" ] || {
			echo "postinst did not enable: no $l"
			rc=1
		}
	done
	return $rc
}
check "postinst enabled pullguard.service and pullguard-authz.socket" enabled

installed_units() {
	local out
	out=$(systemd-analyze verify /usr/lib/systemd/system/pullguard.service /usr/lib/systemd/system/pullguard-authz.socket 2>&1) &&
		[ -z "$out" ] || {
		echo "$out"
		return 1
	}
}
check "systemd-analyze verify (installed units, man pages included)" installed_units

catalog_installed() {
	local n
	n=$(journalctl --list-catalog 2>/dev/null | grep -c 'pullguard: ')
	[ "$n" = "$(grep -c '^-- ' packaging/pullguard.catalog)" ] || {
		echo "journalctl --list-catalog shows $n pullguard entries: the catalog trigger did not run"
		return 1
	}
}
check "journalctl --list-catalog has the catalog (dpkg trigger)" catalog_installed

completion() {
	bash -c 'source /usr/share/bash-completion/completions/pullguard && complete -p pullguard' >/dev/null
}
check "bash completion loads" completion

edited='# edited by verify.sh'
keeps_edit() {
	printf '%s\nmode: enforce\n' "$edited" >>/etc/pullguard/policy.yaml
	echo 'PULLGUARD_LOG_LEVEL=debug' >>/etc/default/pullguard
	dpkg_locked -i "$deb" >/dev/null || return 1
	grep -qx "$edited" /etc/pullguard/policy.yaml || {
		echo "the reinstall replaced the edited policy"
		return 1
	}
	grep -qx 'PULLGUARD_LOG_LEVEL=debug' /etc/default/pullguard || {
		echo "the reinstall replaced the edited /etc/default/pullguard"
		return 1
	}
	/usr/bin/pullguard policy validate | grep -q 'mode=enforce'
}
check "reinstall over an edited policy and env file keeps both" keeps_edit

removed() {
	dpkg_locked -r pullguard >/dev/null || return 1
	[ ! -e /usr/bin/pullguard ] || {
		echo "/usr/bin/pullguard is still there"
		return 1
	}
	[ ! -e /usr/lib/systemd/system/pullguard.service ] || {
		echo "the unit is still there"
		return 1
	}
	grep -qx "$edited" /etc/pullguard/policy.yaml || {
		echo "dpkg -r removed or replaced the policy"
		return 1
	}
	dpkg-query -W -f='${Status}' pullguard | grep -q 'config-files'
}
check "dpkg -r removes the program, keeps /etc/pullguard" removed

purged() {
	local rc=0 left
	# What a daemon with --policy-source keeps: the last verified policy.
	install -d -m 0700 /var/lib/pullguard/policy
	dpkg_locked -P pullguard >/dev/null || return 1
	installed=0
	for p in /etc/pullguard /var/lib/pullguard /etc/default/pullguard /usr/lib/systemd/catalog/pullguard.catalog; do
		[ ! -e "$p" ] || {
			echo "$p is left after purge"
			rc=1
		}
	done
	left=$(find /etc/systemd /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
		-name '*pullguard*' 2>/dev/null)
	[ -z "$left" ] || {
		echo "left after purge: $left"
		rc=1
	}
	if dpkg-query -W -f='${Status}' pullguard 2>/dev/null | grep -qv 'not-installed'; then
		echo "dpkg still knows pullguard: $(dpkg-query -W -f='${Status}' pullguard)"
		rc=1
	fi
	if journalctl --list-catalog 2>/dev/null | grep -q 'pullguard: '; then
		echo "the catalog entries are still in journald's database"
		rc=1
	fi
	return $rc
}
check "dpkg -P removes /etc/pullguard, /var/lib/pullguard, enablement and catalog" purged

# --- the .rpm ---
rpm_list() {
	local l p rc=0
	l=$(rpm -qpl "$rpmf") || return 1
	for p in /usr/bin/pullguard /etc/pullguard/policy.yaml /etc/pullguard/policy.d /etc/sysconfig/pullguard \
		/usr/lib/systemd/system/pullguard.service /usr/lib/systemd/system/pullguard-authz.socket \
		/usr/lib/systemd/catalog/pullguard.catalog /usr/share/man/man8/pullguard.8.gz \
		/usr/share/zsh/site-functions/_pullguard; do
		grep -qx "$p" <<<"$l" || {
			echo "rpm -qpl does not list $p"
			rc=1
		}
	done
	if grep -q '^/etc/default\|lintian' <<<"$l"; then
		echo "the rpm ships Debian-only files"
		rc=1
	fi
	return $rc
}
check "rpm -qpl lists every file" rpm_list

rpm_config() {
	local x
	x=$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpmf" | grep '^c')
	[ "$x" = "$(printf 'cn /etc/pullguard/policy.yaml\ncn /etc/sysconfig/pullguard')" ] || {
		echo "config files (flags): $x"
		return 1
	}
	[ "$(rpm -qpc "$rpmf")" = "$(printf '/etc/pullguard/policy.yaml\n/etc/sysconfig/pullguard')" ]
}
check "rpm config files: policy.yaml, sysconfig, %config(noreplace)" rpm_config

rpm_scripts() {
	local s
	s=$(rpm -qp --scripts "$rpmf")
	for k in 'postinstall scriptlet' 'preuninstall scriptlet' 'postuninstall scriptlet' \
		'systemctl --no-reload preset pullguard.service' 'try-restart pullguard.service'; do
		grep -q "$k" <<<"$s" || {
			echo "rpm -qp --scripts: no \"$k\""
			return 1
		}
	done
}
check "rpm -qp --scripts: %post, %preun, %postun" rpm_scripts

rpm_arch() {
	[ "$(rpm -qp --qf '%{ARCH} %{VERSION}' "$rpmf")" = "x86_64 $version" ] &&
		[ "$(rpm -qp --qf '%{ARCH} %{VERSION}' "$rpm_arm")" = "aarch64 $version" ]
}
check "rpm amd64/arm64: architecture and version" rpm_arch
printf '      arm64 rpm: %s files\n' "$(rpm -qpl "$rpm_arm" | wc -l)"

# A scratch root with only a shell: the scriptlets run chrooted there, as in
# an image build, and must succeed without systemd.
rpm_root() {
	local r=$tmp/rpmroot lib
	mkdir -p "$r/bin" "$r/usr/bin"
	cp /bin/dash "$r/bin/sh"
	for lib in $(ldd /bin/dash | grep -o '/[^ ]*'); do
		mkdir -p "$r$(dirname "$lib")"
		cp -L "$lib" "$r$lib"
	done
	rpm --root "$r" --initdb || return 1
	rpm --root "$r" --nodeps -i "$rpmf" 2>&1 || return 1
	[ -x "$r/usr/bin/pullguard" ] && [ -f "$r/etc/pullguard/policy.yaml" ] && [ -f "$r/etc/sysconfig/pullguard" ] || {
		echo "files missing in the scratch root"
		return 1
	}
	rpm --root "$r" -V pullguard 2>&1 || return 1
	# Erase with an edited policy: kept as .rpmsave.
	echo "$edited" >>"$r/etc/pullguard/policy.yaml"
	rpm --root "$r" --nodeps -e pullguard 2>&1 || return 1
	[ ! -e "$r/usr/bin/pullguard" ] && grep -qx "$edited" "$r/etc/pullguard/policy.yaml.rpmsave" || {
		echo "after rpm -e: binary left, or the edited policy not saved as .rpmsave"
		return 1
	}
}
check "rpm --root: install, verify, erase (scriptlets without systemd)" rpm_root

elapsed=$(($(date +%s) - start))
if [ "$failures" -gt 0 ]; then
	echo "verify.sh: $failures check(s) failed (${elapsed} s)"
	exit 1
fi
echo "verify.sh: all checks passed (${elapsed} s)"
