#!/usr/bin/env bash
# build-helm.sh builds the helm CLI from the Go module proxy once and caches it outside the
# repo, keyed by the helm version and the Go toolchain, beside the sandbox's binaries.
#
# Usage: deploy/helm/build-helm.sh [--print-path]
#   --print-path  only print where the binary is (or would be) for the current key
#
# Progress goes to stderr; the last line on stdout is the helm binary's path, so callers can
# do HELM=$(deploy/helm/build-helm.sh). A second run with the binary present returns at once.
# HELM_VERSION overrides the pinned version.
set -euo pipefail

helm_version=${HELM_VERSION:-v3.22.0}
# helm's own Makefile stamps the version and the Kubernetes version it assumes when no
# cluster is asked (`helm template`, `helm lint`): client-go v0.37 stands for Kubernetes 1.37.
k8s_major=1
k8s_minor=37

print_only=0
for arg in "$@"; do
	case $arg in
	--print-path) print_only=1 ;;
	-h | --help)
		sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "build-helm.sh: unknown argument $arg" >&2
		exit 2
		;;
	esac
done

log() { printf '[helm] %s\n' "$*" >&2; }

key=$({
	go env GOVERSION
	echo "$helm_version $k8s_major.$k8s_minor"
} | sha256sum | cut -c1-12)
cache=${FREEZEFRAME_CACHE:-$HOME/.cache/freezeframe}
dir=$cache/helm/$helm_version-$key
bin=$dir/helm

if [[ $print_only == 1 ]]; then
	echo "$bin"
	exit 0
fi
if [[ -x $bin ]]; then
	echo "$bin"
	exit 0
fi

# One build at a time: parallel test binaries may all ask for helm.
mkdir -p "$cache/helm"
exec 9>"$cache/helm/.build.lock"
if ! flock -n 9; then
	log "waiting for another build-helm.sh to finish"
	flock 9
fi
if [[ -x $bin ]]; then
	echo "$bin"
	exit 0
fi

mkdir -p "$dir"
tmp=$dir/.gobin.$$ logf=$dir/.build.log start=$SECONDS
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
	ldflags+=" -X $pkg.k8sVersionMajor=$k8s_major -X $pkg.k8sVersionMinor=$k8s_minor"
done
log "building helm $helm_version (helm.sh/helm/v3/cmd/helm, cold ~3 min) ..."
# go install outside any module: helm's go.mod has no replace directives.
(cd "$dir" && GOWORK=off GOFLAGS=-buildvcs=false GOBIN=$tmp CGO_ENABLED=0 \
	go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$helm_version") >"$logf" 2>&1 &
pid=$! next=30
while kill -0 "$pid" 2>/dev/null; do
	sleep 1
	if ((SECONDS - start >= next)); then
		log "  ... helm still building, $((SECONDS - start))s elapsed"
		next=$((next + 30))
	fi
done
if ! wait "$pid"; then
	log "building helm failed; output:"
	cat "$logf" >&2
	rm -rf "$tmp"
	exit 1
fi
mv "$tmp/helm" "$bin"
rm -rf "$tmp" "$logf"
log "built helm $helm_version in $((SECONDS - start))s: $bin"
echo "$bin"
