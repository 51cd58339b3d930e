#!/usr/bin/env bash
# Installs what ffwatt needs from Debian/Ubuntu packages when it is missing.
# As root it installs them with apt-get; otherwise it prints the exact command.
# Python packages are installed by the Makefile into .venv.
set -euo pipefail

PYTHON=${PYTHON:-python3}
missing=()

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  missing+=(python3)
elif ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "ffwatt needs Python >= 3.11; $PYTHON is $("$PYTHON" -V 2>&1). Set PYTHON=/path/to/python3.11+." >&2
  exit 1
elif ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi

# The master's TLS proxy and RTMP ingest, and what the multi-host tests use (namespaces, PostgreSQL).
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
[[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ]] || missing+=(libnginx-mod-rtmp)
command -v ip >/dev/null 2>&1 || [[ -x /usr/sbin/ip ]] || missing+=(iproute2)
command -v curl >/dev/null 2>&1 || missing+=(curl)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
# A scaled-out master's messaging (FFWATT_API_PROCESSES > 1).
command -v redis-server >/dev/null 2>&1 || [[ -x /usr/bin/redis-server ]] || missing+=(redis-server)
# The metrics store and alerting (vmalert ships in victoria-metrics), and node facts for it.
command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v prometheus-node-exporter >/dev/null 2>&1 || missing+=(prometheus-node-exporter)
# ffprobe, a reader of what encodes hold that isn't the FFmpeg ffwatt encodes with (the tests check 10-bit
# output with it; ffmpeg-quality-metrics checks its inputs with it). ffwatt itself runs imageio-ffmpeg's build.
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
# The browser test of the Prefect UI (Debian's Chromium, driven through its own driver).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)

if ((${#missing[@]} == 0)); then
  exit 0
fi

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "missing system packages: ${missing[*]}" >&2
  echo "install them with:  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
