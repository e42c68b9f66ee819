#!/bin/sh
# VLESS test server: serve /etc/vpn/config.json with v2ray. The panel's apply writes a new
# file, checks it with `v2ray -test`, swaps it in and kills the core: this loop starts the
# core again on the new file (one reload). Until a first apply there is nothing to serve.
trap 'kill "$(cat /run/core.pid 2>/dev/null)" 2>/dev/null; exit 0' TERM INT
while [ ! -s /etc/vpn/config.json ]; do sleep 0.2; done
while true; do
  v2ray -config /etc/vpn/config.json &
  echo $! >/run/core.pid
  wait $!
  sleep 0.2
done
