#!/usr/bin/env bash
# container-standins.sh: local stand-ins for the three base images the
# Dockerfile and compose.yaml name, for a machine that reaches Debian's
# package mirror but no container registry (docs/deploy.md, "What was
# checked here"). Each is assembled from Debian bookworm packages and
# tagged with the official name, so the unchanged Dockerfile and compose
# file build and run with `podman build --pull=never` / `podman-compose`:
#
#   golang:1.26                               debootstrap minbase + git + this machine's /usr/local/go
#   gcr.io/distroless/static-debian12:nonroot passwd/group with nonroot (65532), CA bundle, tzdata, /tmp
#   redis:7-alpine                            Debian's redis-server 7.0, protected mode off without a config
#                                             file (as the official image's entrypoint does)
#
# Needs root, podman, debootstrap. Never use these images for anything but
# this check; on a machine that reaches the registries, pull the real ones.
# The CA bundle of this machine goes into the Go image so `go mod download`
# works behind a TLS-intercepting proxy.
#
# Usage: scripts/container-standins.sh [WORKDIR]   (default /tmp/sb-standins)
set -euo pipefail

work=${1:-/tmp/sb-standins}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
goroot=$(go env GOROOT)
gover=$(go env GOVERSION)
case $gover in go1.26.*) ;; *) echo "container-standins: the Dockerfile wants Go 1.26, this machine has $gover" >&2; exit 1 ;; esac

mkdir -p "$work"
base=$work/bookworm
if [ ! -x "$base/bin/sh" ]; then
	debootstrap --variant=minbase bookworm "$base" "$mirror"
fi

# import DIR NAME CHANGES...: one image from a root file system.
import() {
	local dir=$1 name=$2
	shift 2
	local args=()
	for c in "$@"; do args+=(--change "$c"); done
	tar -C "$dir" --numeric-owner -cf "$work/rootfs.tar" .
	podman import -q "${args[@]}" "$work/rootfs.tar" "$name" >/dev/null
	rm -f "$work/rootfs.tar"
	echo "container-standins: $name"
}

# golang:1.26 — the build stage.
gofs=$work/golang
rm -rf "$gofs"
cp -a "$base" "$gofs"
chroot "$gofs" /bin/sh -c 'apt-get install -y --no-install-recommends ca-certificates git >/dev/null && apt-get clean'
cp /etc/ssl/certs/ca-certificates.crt "$gofs/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$gofs/usr/local" "$gofs/go"
cp -a "$goroot" "$gofs/usr/local/go"
import "$gofs" docker.io/library/golang:1.26 \
	'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	'ENV GOPATH=/go' 'ENV GOTOOLCHAIN=local' 'WORKDIR /go' 'CMD ["bash"]'
rm -rf "$gofs"

# gcr.io/distroless/static-debian12:nonroot — the run stage.
st=$work/static
rm -rf "$st"
mkdir -p "$st/etc/ssl/certs" "$st/usr/share" "$st/tmp" "$st/home/nonroot" "$st/root"
chmod 1777 "$st/tmp"
chmod 700 "$st/root" "$st/home/nonroot"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$st/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$st/etc/group"
printf 'hosts: files dns\n' >"$st/etc/nsswitch.conf"
cp "$base/etc/os-release" "$st/etc/os-release"
cp /etc/ssl/certs/ca-certificates.crt "$st/etc/ssl/certs/"
cp -a /usr/share/zoneinfo "$st/usr/share/"
chown 65532:65532 "$st/home/nonroot"
import "$st" gcr.io/distroless/static-debian12:nonroot \
	'USER 65532' 'WORKDIR /home/nonroot' \
	'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt'
rm -rf "$st"

# redis:7-alpine — compose's engine.
rd=$work/redis
rm -rf "$rd"
cp -a "$base" "$rd"
chroot "$rd" /bin/sh -c 'apt-get install -y --no-install-recommends redis-server redis-tools >/dev/null && apt-get clean'
cat >"$rd/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# Stand-in entrypoint: redis-server without a config file runs with
# protected mode off, so other containers on the network may connect.
if [ "$1" = redis-server ]; then
	shift
	exec redis-server --protected-mode no "$@"
fi
exec "$@"
EOF
chmod 755 "$rd/usr/local/bin/docker-entrypoint.sh"
import "$rd" docker.io/library/redis:7-alpine \
	'ENTRYPOINT ["docker-entrypoint.sh"]' 'CMD ["redis-server"]' 'EXPOSE 6379'
rm -rf "$rd"
