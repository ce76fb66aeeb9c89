#!/usr/bin/env bash
# Installs the system packages BuildStream needs to build, run and test:
# GStreamer with the plugins the origin uses, ffmpeg/ffprobe for tests,
# nginx with the RTMP module as a local destination, Chromium for the browser
# tests, Node.js for the web app, MariaDB, Redis and RabbitMQ for the control
# plane's tests; then the web app's npm packages.
# Idempotent: what is already present is skipped.
set -euo pipefail

DEBIAN_PACKAGES=(
  pkg-config
  libgstreamer1.0-dev
  libgstreamer-plugins-base1.0-dev
  gstreamer1.0-tools
  gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly
  gstreamer1.0-libav
  gstreamer1.0-nice
  gstreamer1.0-x
  ffmpeg
  nginx-light
  libnginx-mod-rtmp
  libnginx-mod-stream
  openssl
  curl
  jq
  fonts-dejavu-core
  chromium
  # The servers the control plane's tests run against, and what checks the
  # compose file without a Docker engine.
  mariadb-server
  redis-server
  rabbitmq-server
  docker-compose
)
# Node.js 18+ builds the web app; a newer one already installed is kept.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  DEBIAN_PACKAGES+=(nodejs npm)
fi

missing_debian_packages() {
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      echo "$pkg"
    fi
  done
}

if [ -r /etc/debian_version ]; then
  mapfile -t missing < <(missing_debian_packages)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
else
  cat <<'MSG'
setup: this is not Debian/Ubuntu; install these yourself, then run make again:
  - Rust (rustup.rs), pkg-config
  - GStreamer 1.22+ development files with plugins base, good, bad, ugly and libav
  - ffmpeg (ffprobe is used by the tests)
  - nginx with the RTMP module (only for the tests' local destinations)
  - Chromium (only for the browser tests) and Node.js 18+ with npm
MSG
  command -v pkg-config >/dev/null && pkg-config --exists gstreamer-1.0 || exit 1
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust from https://rustup.rs" >&2
  exit 1
fi

# The web app's packages, from its lock file; reinstalled when the lock file
# is newer than what was installed.
WEB_DIR="$(dirname "$0")/../web"
if [ -f "$WEB_DIR/package-lock.json" ]; then
  stamp="$WEB_DIR/node_modules/.package-lock.json"
  if [ ! -f "$stamp" ] || [ "$WEB_DIR/package-lock.json" -nt "$stamp" ]; then
    echo "setup: installing the web app's npm packages"
    (cd "$WEB_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
