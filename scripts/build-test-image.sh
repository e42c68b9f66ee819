#!/usr/bin/env bash
# Build vpnadmin-test/busybox:latest on the engine at $1 from Debian's static busybox,
# with `docker import`: no registry is needed. Does nothing when the image exists.
set -euo pipefail
host=${1:-unix:///var/run/docker.sock}
image=vpnadmin-test/busybox:latest
export DOCKER_API_VERSION=1.41
if docker -H "$host" image inspect "$image" >/dev/null 2>&1; then exit 0; fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev,var/run}
cp /bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
echo "root:x:0:" >"$root/etc/group"
tar -C "$root" -c . | docker -H "$host" import \
  --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' - "$image" >/dev/null
echo "==> built $image on $host"
