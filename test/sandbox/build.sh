#!/usr/bin/env bash
# build.sh builds the sandbox's upstream binaries once and caches them outside the repo,
# keyed by the Go version and the tools modules' go.mod/go.sum, and installs the Debian
# packages the sandbox runs (kubectl, redis, mariadb, postgresql) when they are missing.
#
# Usage: test/sandbox/build.sh [--no-packages] [--print-dir]
#   --no-packages  do not check or install Debian packages
#   --print-dir    only print the cache directory for the current key; build nothing
#
# Progress goes to stderr; the last line on stdout is the binary directory, so callers can
# do BIN=$(test/sandbox/build.sh). A second run with everything present returns at once.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tools=$here/tools

k8s_version=v1.34.4
k8s_minor=34
# Bump when the patch applied to kwok (see kwok_overlay) changes.
kwok_patch=stdin-eof-1

packages=1
print_only=0
for arg in "$@"; do
	case $arg in
	--no-packages) packages=0 ;;
	--print-dir) print_only=1 ;;
	-h | --help)
		sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "build.sh: unknown argument $arg" >&2
		exit 2
		;;
	esac
done

log() { printf '[sandbox] %s\n' "$*" >&2; }

# The key changes whenever a pinned version, the toolchain or the ldflags change.
key=$({
	go env GOVERSION
	echo "$k8s_version $kwok_patch"
	cat "$tools"/*/go.mod "$tools"/*/go.sum
} | sha256sum | cut -c1-12)
cache=${FREEZEFRAME_CACHE:-$HOME/.cache/freezeframe}
bin=$cache/sandbox/bin-$key

if [[ $print_only == 1 ]]; then
	echo "$bin"
	exit 0
fi

install_packages() {
	local missing=()
	command -v kubectl >/dev/null || missing+=(kubernetes-client)
	command -v redis-server >/dev/null || missing+=(redis-server)
	command -v mariadbd >/dev/null || missing+=(mariadb-server)
	# Debian keeps the PostgreSQL server binaries off PATH, under /usr/lib/postgresql/<major>/bin.
	compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
	[[ ${#missing[@]} == 0 ]] && return 0
	log "installing Debian packages: ${missing[*]}"
	local sudo=()
	[[ $(id -u) == 0 ]] || sudo=(sudo)
	# Installing must not start the servers as system services: the sandbox runs its own.
	local aptlog=$cache/sandbox/apt.log
	if ! { "${sudo[@]}" apt-get update -qq &&
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
			apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$aptlog" 2>&1; then
		log "apt-get failed; output:"
		cat "$aptlog" >&2
		return 1
	fi
	log "installed ${missing[*]}"
}

ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$k8s_minor"

# build <name> <tools module> <package> <rough cold time> [extra go build flags...]
build() {
	local name=$1 mod=$2 pkg=$3 eta=$4
	shift 4
	[[ -x $bin/$name ]] && return 0
	mkdir -p "$bin"
	local tmp=$bin/.$name.tmp.$$ logf=$bin/.$name.log start=$SECONDS
	log "building $name ($pkg, cold ~$eta) ..."
	(
		if [[ $mod == /* ]]; then cd "$mod"; else cd "$tools/$mod"; fi
		GOWORK=off GOFLAGS=-buildvcs=false go build -trimpath -ldflags "$ldflags" "$@" -o "$tmp" "$pkg"
	) >"$logf" 2>&1 &
	local pid=$! next=30
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1
		if ((SECONDS - start >= next)); then
			log "  ... $name still building, $((SECONDS - start))s elapsed"
			next=$((next + 30))
		fi
	done
	if ! wait "$pid"; then
		log "building $name failed; output:"
		cat "$logf" >&2
		rm -f "$tmp"
		return 1
	fi
	mv "$tmp" "$bin/$name"
	rm -f "$logf"
	log "built $name in $((SECONDS - start))s"
}

# One build at a time: `go test ./...` starts several packages that each call this script.
mkdir -p "$cache/sandbox"
exec 9>"$cache/sandbox/.build.lock"
if ! flock -n 9; then
	log "waiting for another build.sh to finish"
	flock 9
fi

if [[ $packages == 1 ]]; then install_packages; fi

total=$SECONDS
build csi-sanity csi-test github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity "1 min"
build etcd kubernetes go.etcd.io/etcd/server/v3 "1 min"
build kube-apiserver kubernetes k8s.io/kubernetes/cmd/kube-apiserver "7 min"
build kube-controller-manager kubernetes k8s.io/kubernetes/cmd/kube-controller-manager "2 min"
build kube-scheduler kubernetes k8s.io/kubernetes/cmd/kube-scheduler "15 s"
# kwok v0.7.0 copies an exec's stdin into the command's stdin pipe but never closes the
# pipe: a command never sees EOF, so `kubectl exec -i ... -- mariadb` (a session-held
# FLUSH TABLES WITH READ LOCK) would hold its lock after the client went away, unlike
# a real kubelet. kwok is built from a copy of its module with that one line fixed (go
# build -overlay refuses files in the module cache), in a scratch module beside the
# binaries; the module cache and the repo stay untouched.
kwok_source() {
	local dir work
	# go list -m reports no Dir until the module is in the module cache.
	dir=$(cd "$tools/kwok" && GOWORK=off go mod download sigs.k8s.io/kwok 2>/dev/null &&
		GOWORK=off go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
	if [[ -z $dir ]]; then
		log "cannot locate sigs.k8s.io/kwok in the module cache"
		return 1
	fi
	work=$bin/.kwok-build
	rm -rf "$work"
	mkdir -p "$work"
	cp "$tools/kwok/go.mod" "$tools/kwok/go.sum" "$work/"
	cp -r "$dir" "$work/kwok"
	chmod -R u+w "$work/kwok"
	local f=$work/kwok/pkg/utils/exec/exec.go
	sed -i 's|^\(\t*\)_, _ = io.Copy(inPipe, opt.In)$|\1_, _ = io.Copy(inPipe, opt.In)\n\1_ = inPipe.Close() // freezeframe sandbox: deliver EOF|' "$f"
	if ! grep -q 'freezeframe sandbox: deliver EOF' "$f"; then
		log "kwok patch did not apply to $f"
		return 1
	fi
	(cd "$work" && GOWORK=off go mod edit -replace sigs.k8s.io/kwok=./kwok)
	echo "$work"
}
if [[ ! -x $bin/kwok ]]; then
	mkdir -p "$bin"
	kwok_work=$(kwok_source)
	build kwok "$kwok_work" sigs.k8s.io/kwok/cmd/kwok "3.5 min"
	rm -rf "$kwok_work"
fi

build snapshot-controller snapshotter github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller "3 min"
build csi-snapshotter snapshotter github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter "1 min"
build csi-provisioner provisioner github.com/kubernetes-csi/external-provisioner/v5/cmd/csi-provisioner "3 min"
if ((SECONDS - total > 1)); then
	log "all binaries in $bin ($((SECONDS - total))s)"
fi
echo "$bin"
