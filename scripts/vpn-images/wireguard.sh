#!/bin/sh
# WireGuard test server: wireguard-go makes wg0 inside this container's own network
# namespace (network_mode none + NET_ADMIN + /dev/net/tun); the panel applies peers with
# `wg syncconf` (no restart). A restarted container comes back with the last applied set.
trap 'kill "$(cat /run/core.pid 2>/dev/null)" 2>/dev/null; exit 0' TERM INT
mkdir -p /var/run/wireguard
wireguard-go -f wg0 &
echo $! >/run/core.pid
for _ in $(seq 1 50); do [ -S /var/run/wireguard/wg0.sock ] && break; sleep 0.1; done
ip link set wg0 up
while [ ! -s /etc/vpn/wg0.conf ] || [ ! -s /etc/vpn/address ]; do sleep 0.2; done
wg setconf wg0 /etc/vpn/wg0.conf
ip address replace "$(cat /etc/vpn/address)" dev wg0
wait
