#!/usr/bin/env bash
# Make this machine ready for the tests: Debian packages, PostgreSQL, Redis, a local
# Docker engine (and a second one standing in for a remote host) and the test image.
# Safe to run again: each step checks first and only acts when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

# --- Debian packages ----------------------------------------------------------------
need=()
command -v dockerd >/dev/null || need+=(docker.io)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v pg_isready >/dev/null || need+=(postgresql-client)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v curl >/dev/null || need+=(curl)
# The VPN cores the server images are made of, and their clients in the tests.
command -v v2ray >/dev/null || need+=(v2ray)
command -v ss-manager >/dev/null || need+=(shadowsocks-libev)
command -v wireguard-go >/dev/null || need+=(wireguard-go)
command -v wg >/dev/null || need+=(wireguard-tools)
command -v socat >/dev/null || need+=(socat)
command -v openssl >/dev/null || need+=(openssl)  # the e2e nginx test's self-signed certificate
command -v zbarimg >/dev/null || need+=(zbar-tools)  # reads the QR codes back in the delivery tests
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# nginx for e2e/test_nginx.py, which starts its own from the shipped site file. Installed
# without starting Debian's default site (it would listen on port 80 of this machine).
if ! [ -x /usr/sbin/nginx ]; then
  log "installing nginx (not started)"
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
  if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

# --- a local wheelhouse: bench/run times installs from it, with no network traffic ---
if [ ! -f var/wheelhouse/.complete ] || [ requirements.txt -nt var/wheelhouse/.complete ]; then
  log "filling var/wheelhouse from requirements.txt"
  if .venv/bin/pip download -q --require-hashes --only-binary=:all: -r requirements.txt -d var/wheelhouse; then
    touch var/wheelhouse/.complete
  else
    echo "warning: var/wheelhouse is incomplete; \`make bench SUITE=run\` needs it" >&2
  fi
fi

# --- PostgreSQL ----------------------------------------------------------------------
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL does not answer on 127.0.0.1:5432" >&2; exit 1; }
# The development database `manage.py check` and `makemigrations --check` look at;
# the tests make their own test_vpnadmin. Other databases are left alone.
for db in vpnadmin; do
  psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db"
done

# --- Redis ---------------------------------------------------------------------------
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "Redis does not answer on 127.0.0.1:6379" >&2; exit 1; }

# --- Docker engines ------------------------------------------------------------------
engine_answers() { curl -sf --max-time 3 --unix-socket "$1" http://localhost/_ping >/dev/null 2>&1; }

start_engine() {  # socket, data-root, exec-root, pidfile, log
  local sock=$1 data=$2 exec=$3 pid=$4 logf=$5
  if engine_answers "$sock"; then return 0; fi
  log "starting dockerd on $sock"
  mkdir -p "$data" "$exec"
  # A stale pidfile from a killed engine would stop a new one from starting.
  if [ -f "$pid" ] && ! kill -0 "$(cat "$pid")" 2>/dev/null; then rm -f "$pid"; fi
  # vfs and no bridge/iptables: what works on this machine without kernel privileges.
  nohup dockerd -H "unix://$sock" --data-root "$data" --exec-root "$exec" --pidfile "$pid" \
    --storage-driver=vfs --iptables=false --bridge=none >"$logf" 2>&1 &
  for _ in $(seq 1 60); do engine_answers "$sock" && return 0; sleep 0.5; done
  echo "dockerd on $sock did not start; its log:" >&2; tail -20 "$logf" >&2; exit 1
}
start_engine /var/run/docker.sock /var/lib/docker /var/run/docker /var/run/docker.pid /var/log/vpnadmin-dockerd.log
# A second engine on its own socket stands in for a remote host in the tests.
start_engine /var/run/vpnadmin-docker2.sock /var/lib/vpnadmin-docker2 /var/run/vpnadmin-docker2 \
  /var/run/vpnadmin-docker2.pid /var/log/vpnadmin-dockerd2.log

# --- the test image (no registry is reachable: built from busybox-static) ------------
for sock in /var/run/docker.sock /var/run/vpnadmin-docker2.sock; do
  bash scripts/build-test-image.sh "unix://$sock"
  # VPN server images (VLESS, Shadowsocks, WireGuard) from the Debian packages above.
  bash scripts/build-vpn-images.sh "unix://$sock"
done
log "test machine ready"
