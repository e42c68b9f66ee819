#!/usr/bin/env bash
# Build the VPN server test images on the engine at $1 from Debian's own binaries, with
# `docker import` (no registry is reachable): busybox for the shell, the core's binaries,
# every library `ldd` names, and the small entrypoint in scripts/vpn-images/. An image
# that exists is left alone (VPNADMIN_REBUILD=1 rebuilds).
#   vpnadmin-test/v2ray:latest        VLESS (v2ray 4.34 + v2ctl for the StatsService)
#   vpnadmin-test/shadowsocks:latest  Shadowsocks (ss-manager running one ss-server per user)
#   vpnadmin-test/wireguard:latest    WireGuard (wireguard-go + wg + ip)
set -euo pipefail
cd "$(dirname "$0")/.."
host=${1:-unix:///var/run/docker.sock}
export DOCKER_API_VERSION=1.41

build() {  # image entrypoint binaries...
  local image=$1 entry=$2
  shift 2
  if [ "${VPNADMIN_REBUILD:-0}" != 1 ] && docker -H "$host" image inspect "$image" >/dev/null 2>&1; then
    return 0
  fi
  local root
  root=$(mktemp -d)
  mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev,run,var/run,etc/vpn}
  cp /bin/busybox "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
  done
  local bin lib
  for bin in "$@"; do
    # Replace a busybox applet of the same name (cp would write through its symlink).
    rm -f "$root/bin/$(basename "$bin")"
    cp -L "$bin" "$root/bin/$(basename "$bin")"
    # Each library at the path the loader looks for it (ldd prints "name => /path" or "/path").
    for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  done
  cp "scripts/vpn-images/$entry" "$root/bin/vpnadmin-entry"
  chmod 755 "$root/bin/vpnadmin-entry"
  echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
  echo "root:x:0:" >"$root/etc/group"
  echo "nogroup:x:65534:" >>"$root/etc/group"
  echo "nobody:x:65534:65534:nobody:/:/bin/false" >>"$root/etc/passwd"
  tar -C "$root" -c . | docker -H "$host" import \
    --change 'CMD ["/bin/vpnadmin-entry"]' --change 'ENV PATH=/bin' - "$image" >/dev/null
  rm -rf "$root"
  echo "==> built $image on $host"
}

build vpnadmin-test/v2ray:latest v2ray.sh /usr/bin/v2ray /usr/bin/v2ctl
# socat: the manager API is UDP and busybox nc speaks only TCP.
build vpnadmin-test/shadowsocks:latest shadowsocks.sh /usr/bin/ss-manager /usr/bin/ss-server /usr/bin/socat
build vpnadmin-test/wireguard:latest wireguard.sh /usr/bin/wireguard-go /usr/bin/wg /usr/sbin/ip
