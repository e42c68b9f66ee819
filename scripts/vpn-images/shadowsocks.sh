#!/bin/sh
# Shadowsocks test server: ss-manager with its UDP API on 127.0.0.1:$VPNADMIN_PORT (the
# server's port; users get the ports above it), users' ss-servers on $VPNADMIN_LISTEN. Users are
# added and removed live by the panel (`add:`/`remove:`); the applied set is kept in
# /etc/vpn/config.json so a restarted container serves the same users at once.
trap 'kill "$(cat /run/core.pid 2>/dev/null)" 2>/dev/null; exit 0' TERM INT
mkdir -p /run/ss
[ -s /etc/vpn/config.json ] || echo '{"port_password": {}}' >/etc/vpn/config.json
while true; do
  ss-manager -c /etc/vpn/config.json -m "${SS_METHOD:-chacha20-ietf-poly1305}" -s "${VPNADMIN_LISTEN:-0.0.0.0}" \
    --manager-address "127.0.0.1:${VPNADMIN_PORT:-6001}" --executable /bin/ss-server -D /run/ss -u &
  echo $! >/run/core.pid
  wait $!
  sleep 0.2
done
