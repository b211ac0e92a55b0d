#!/usr/bin/env bash
# One-time machine setup for peftc: npm packages, then a Vulkan driver for Dawn
# when no WebGPU adapter is found. Idempotent: safe to run again.
# Why Mesa from bookworm-backports: Dawn rejects bookworm's own Mesa 22.3
# lavapipe (see ../shared/WEBGPU.md); Mesa 25 from backports works.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d node_modules ] || [ package.json -nt node_modules/.package-lock.json ]; then
  # npm ci refuses a lock without every optional platform package of node-llama-cpp (a
  # registry mirror may lack the mac/win/riscv ones); npm install then keeps the lock's versions.
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund || {
      echo "setup: npm ci refused the lock (optional packages this registry lacks?); npm install with the lock instead" >&2
      npm install --no-audit --no-fund
    }
  else npm install --no-audit --no-fund; fi
fi

probe() { node scripts/probe-adapter.mjs >/dev/null 2>&1; }

# Loss plots are rendered to PNG with resvg, which needs a system font for their text.
if [ ! -d /usr/share/fonts/truetype/dejavu ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-dejavu-core || \
    echo "setup: could not install fonts-dejavu-core; loss plots (PNG) may have no text" >&2
fi

if probe; then
  echo "setup: a WebGPU adapter is available: $(node scripts/probe-adapter.mjs 2>/dev/null)"
  exit 0
fi

mesa_major() { dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | sed -E 's/^([0-9]+:)?([0-9]+).*/\2/'; }

if [ -r /etc/os-release ] && . /etc/os-release && [ "${ID:-}" = debian -o "${ID_LIKE:-}" = debian ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: no WebGPU adapter; re-run as root so that Mesa's lavapipe Vulkan driver can be installed" >&2
    exit 1
  fi
  if [ "${VERSION_CODENAME:-}" = bookworm ] && [ "$(mesa_major)" != 25 ]; then
    has_backports() { grep -qs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; }
    if ! has_backports && [ -f /etc/apt/sources.list.d/debian.sources ]; then
      # Derive bookworm-backports from the existing Debian sources (deb822), same mirrors.
      awk 'BEGIN{RS="";ORS="\n\n"} /Suites: bookworm bookworm-updates/' /etc/apt/sources.list.d/debian.sources \
        | sed 's/^Suites: .*/Suites: bookworm-backports/' > /tmp/peftc-backports.sources
      if [ -s /tmp/peftc-backports.sources ]; then mv /tmp/peftc-backports.sources /etc/apt/sources.list.d/backports.sources; fi
    fi
    if ! has_backports && [ -f /etc/apt/sources.list ]; then
      # One-line format (older images): reuse the mirror of the main bookworm line.
      uri=$(sed -nE 's/^deb (\[[^]]*\] )?([^ ]+) bookworm( .*)?$/\2/p' /etc/apt/sources.list | head -1)
      if [ -n "$uri" ]; then echo "deb $uri bookworm-backports main" > /etc/apt/sources.list.d/backports.list; fi
    fi
    if ! has_backports; then
      echo "setup: could not derive bookworm-backports from the apt sources; add it (same mirror, suite bookworm-backports, component main) and run again" >&2
      exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1
  elif [ "$(mesa_major)" = "" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1
  fi
else
  echo "setup: no WebGPU adapter found. Install a Vulkan driver (NVIDIA/AMD/Intel, or Mesa >= 24 lavapipe) and libvulkan1, then run again." >&2
  exit 1
fi

if probe; then
  echo "setup: WebGPU adapter ready: $(node scripts/probe-adapter.mjs 2>/dev/null)"
else
  echo "setup: installed Mesa but still no WebGPU adapter; run 'node scripts/probe-adapter.mjs' to see Dawn's error" >&2
  exit 1
fi
