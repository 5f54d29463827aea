#!/usr/bin/env bash
# Install the Debian packages the project needs when they are missing (as root only).
# libngspice0: ngspice's shared library, loaded by simulators/spice through ctypes.
# dataset-fashion-mnist: Fashion-MNIST in IDX files, the real-data test of the IDX loader.
# chromium, chromium-driver: the headless browser the dashboard's tests drive with selenium.
set -euo pipefail
needed=(libngspice0 dataset-fashion-mnist chromium chromium-driver)
missing=()
for pkg in "${needed[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run: sudo apt-get install ${missing[*]});" \
       "tests that need them will fail or skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
echo "installed ${missing[*]}"
