#!/usr/bin/env bash
# A Docker engine of the project's own, for `make image` and `make kubeflow-e2e`.
#
#   kubeflow/container/engine.sh start    install Debian's docker.io if needed, start dockerd
#                                         unless one answers at $EMOTION_AI_DOCKER_HOST
#   kubeflow/container/engine.sh stop     stop the dockerd this script started (by its PID)
#   kubeflow/container/engine.sh host     print the DOCKER_HOST to use
#
# No bridge, no iptables (containers use --network host or none), overlay2 storage, its own
# data and exec roots under $EMOTION_AI_DOCKER_DIR (default /var/tmp/emotion-ai-docker), so
# it never touches an engine someone else runs on this machine.
set -euo pipefail
dir="${EMOTION_AI_DOCKER_DIR:-/var/tmp/emotion-ai-docker}"
sock="$dir/docker.sock"
host="${EMOTION_AI_DOCKER_HOST:-unix://$sock}"
pidfile="$dir/dockerd.pid"

answers() { DOCKER_HOST="$host" timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

install() {
  command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 && return
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "engine: no dockerd here and cannot install Debian's docker.io (needs root and apt-get)" >&2; exit 1
  fi
  echo "engine: installing Debian's docker.io"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
}

case "${1:-}" in
  host) echo "$host" ;;
  start)
    if answers; then echo "engine: dockerd answers at $host"; exit 0; fi
    install
    mkdir -p "$dir/data" "$dir/exec"
    dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 \
      --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$pidfile" --host "$host" \
      >"$dir/dockerd.log" 2>&1 &
    for _ in $(seq 60); do
      if answers; then echo "engine: dockerd $(DOCKER_HOST="$host" docker version --format '{{.Server.Version}}') started at $host (pid $(cat "$pidfile"), log $dir/dockerd.log)"; exit 0; fi
      sleep 0.5
    done
    echo "engine: dockerd did not answer within 30 s; log $dir/dockerd.log:" >&2; tail -20 "$dir/dockerd.log" >&2; exit 1 ;;
  stop)
    if [ -f "$pidfile" ]; then
      pid="$(cat "$pidfile")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      echo "engine: stopped dockerd (pid $pid)"
    else echo "engine: no dockerd of ours is running"; fi ;;
  *) echo "usage: $0 start|stop|host" >&2; exit 2 ;;
esac
