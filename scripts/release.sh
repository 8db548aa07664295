#!/usr/bin/env bash
# Cross-builds swarmtrain into dist/: one tar.gz per platform (binary,
# LICENSE, README.md, packaging/) and SHA256SUMS.
#
#   scripts/release.sh                      # version from git describe
#   VERSION=v0.4.0 scripts/release.sh
#   TARGETS="linux/amd64" scripts/release.sh
#
# GPU detection (NVML) needs cgo. A target this machine can compile C for
# (the native one, or linux/arm64 with CC_LINUX_ARM64=aarch64-linux-gnu-gcc)
# is built with cgo; the others with CGO_ENABLED=0, whose `swarmtrain
# devices` says "GPU detection needs a cgo build" and which run on the CPU
# as usual. CGO=0 forces that everywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo devel)}
COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || true)}
TARGETS=${TARGETS:-"linux/amd64 linux/arm64 darwin/arm64"}
pkg=github.com/swarmtrain/swarmtrain/internal/buildinfo
ldflags="-s -w -X $pkg.version=$VERSION -X $pkg.commit=$COMMIT"

rm -rf dist
mkdir -p dist
for target in $TARGETS; do
	os=${target%/*} arch=${target#*/}
	cgo=0 cc=
	if [[ ${CGO:-auto} != 0 ]]; then
		if [[ $os == "$(go env GOHOSTOS)" && $arch == "$(go env GOHOSTARCH)" ]] && command -v "${CC:-cc}" >/dev/null; then
			cgo=1 cc=${CC:-cc}
		elif [[ $target == linux/arm64 && -n ${CC_LINUX_ARM64:-} ]]; then
			cgo=1 cc=$CC_LINUX_ARM64
		fi
	fi
	name=swarmtrain-$VERSION-$os-$arch
	out=dist/$name
	mkdir -p "$out"
	echo "building $target (cgo $cgo)"
	# go-nvml's header marks calls it wraps (and we never make) deprecated.
	CGO_CFLAGS=${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations} \
		CGO_ENABLED=$cgo CC=$cc GOOS=$os GOARCH=$arch \
		go build -trimpath -ldflags "$ldflags" -o "$out/swarmtrain" ./cmd/swarmtrain
	cp LICENSE README.md "$out/"
	cp -r packaging "$out/"
	tar -C dist -czf "dist/$name.tar.gz" "$name"
	rm -rf "$out"
done
(
	cd dist
	if command -v sha256sum >/dev/null; then
		sha256sum ./*.tar.gz | sed 's| \./| |' >SHA256SUMS
	else
		shasum -a 256 ./*.tar.gz | sed 's| \./| |' >SHA256SUMS
	fi
	ls -l ./*.tar.gz
	cat SHA256SUMS
)
