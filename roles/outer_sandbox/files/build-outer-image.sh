#!/usr/bin/env bash
# Build the Fortress outer image (dockerd, containerd and runsc on Debian) from Debian
# packages with debootstrap, and import it into the local Docker engine as TAG.
# The one implementation of the outer image: the outer_sandbox role runs it on a host
# (outer_sandbox_image_source: build) and the lab tooling runs it once to make the archive
# that CI and VM lab hosts load (source: archive).
#
# usage: build-outer-image.sh TAG SUITE MIRROR [APT_PROXY]
#   TAG       image reference to create, e.g. fortress/outer:trixie-1
#   SUITE     Debian suite (trixie carries Docker 26 and runsc 20240729)
#   MIRROR    Debian mirror URL, e.g. http://deb.debian.org/debian
#   APT_PROXY optional http proxy for apt inside the build (e.g. an apt-cacher-ng)
set -euo pipefail

if [[ $# -lt 3 ]]; then
  echo "usage: $0 TAG SUITE MIRROR [APT_PROXY]" >&2
  exit 2
fi
tag=$1 suite=$2 mirror=$3 proxy=${4:-}
packages=docker.io,containerd,runc,runsc,iptables,ca-certificates,procps,iproute2,tini

for tool in debootstrap docker tar; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "build-outer-image: $tool is not installed; install it (apt-get install $tool) and retry." >&2
    exit 1
  fi
done

work=$(mktemp -d /var/tmp/fortress-outer-build.XXXXXX)
cleanup() {
  # debootstrap mounts proc/sys in the tree; a failed run can leave them mounted.
  grep -o " $work/rootfs[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount --lazy || true
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

started=$SECONDS
if [[ -n $proxy ]]; then
  # Only for the build: nothing of the proxy stays in the image.
  export http_proxy=$proxy
fi
echo "[outer-image] debootstrap $suite with $packages ..."
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$work/rootfs" "$mirror" \
  >"$work/debootstrap.out" 2>&1; then
  echo "build-outer-image: debootstrap of $suite from $mirror failed; last lines:" >&2
  tail -n 15 "$work/rootfs/debootstrap/debootstrap.log" 2>/dev/null || tail -n 15 "$work/debootstrap.out" >&2
  exit 1
fi

root=$work/rootfs
# No daemons start at image build time; the outer's init (bind-mounted by the role) starts
# dockerd with the role's daemon.json. Drop what the packages ship that we do not use.
rm -f "$root/etc/docker/daemon.json"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
: >"$root/etc/machine-id"
printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\n' "$mirror" "$suite" \
  >"$root/etc/apt/sources.list.d/debian.sources"
rm -f "$root/etc/apt/sources.list"

echo "[outer-image] importing as $tag ..."
tar --numeric-owner -C "$root" -c . | docker import \
  --change 'ENV container=docker' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'LABEL io.fortress.outer.suite='"$suite" \
  --change 'CMD ["/usr/local/sbin/fortress-outer-init"]' \
  - "$tag" >/dev/null
echo "[outer-image] built $tag in $((SECONDS - started)) s"
