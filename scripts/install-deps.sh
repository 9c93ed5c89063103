#!/usr/bin/env bash
# Installs what building and running the lambdaless stack needs on a Debian/Ubuntu host.
# Idempotent and quick (well under a second) when everything is already there.
#
#   scripts/install-deps.sh [--dev] [--check]
#
#   --dev     also shellcheck (for linting the scripts)
#   --check   only report what is missing; exit 1 if something is
#
# Needs: Docker Engine (daemon running) and a compose tool (`docker compose` v2 plugin, or
# docker-compose v1.29+); apt-get + dpkg-deb (the base image is made of Debian packages);
# mmdebstrap (the moto emulator image); python3 with pip (moto's wheels); binutils (readelf,
# to check what a binary links); mosquitto and mosquitto-clients (the comparison broker of
# `lambdaless bench broker`, and `mosquitto_pub`/`mosquitto_sub`, third-party clients the
# test suite drives); chromium and chromium-driver (the console's browser test); a venv with paho-mqtt at $LL_CACHE_DIR/paho-venv (the other third-party
# client, for the suite and the benchmark; pip uses the machine's configured index).
# The Rust toolchain is expected on the machine (rustup).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dev=0 check=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    --check) check=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown option $arg" ;;
  esac
done

pkgs=()   # Debian packages to install
notes=()  # things we cannot install, only report

have docker || pkgs+=(docker.io)
if ! docker compose version >/dev/null 2>&1 && ! have docker-compose; then pkgs+=(docker-compose); fi
have dpkg-deb || pkgs+=(dpkg)
have mmdebstrap || pkgs+=(mmdebstrap)
have readelf || pkgs+=(binutils)
have python3 || pkgs+=(python3)
if ! python3 -m pip --version >/dev/null 2>&1; then pkgs+=(python3-pip); fi
have sha256sum || pkgs+=(coreutils)
# The suite makes a throw-away CA and server certificate for its HTTPS-endpoint test.
have openssl || pkgs+=(openssl)
have mosquitto || [[ -x /usr/sbin/mosquitto ]] || pkgs+=(mosquitto)
have mosquitto_pub || pkgs+=(mosquitto-clients)
python3 -c 'import ensurepip' >/dev/null 2>&1 || pkgs+=(python3-venv)
# The console's browser test (tests/it/console.rs) drives a real headless Chromium.
[[ -x /usr/bin/chromium ]] || pkgs+=(chromium)
[[ -x /usr/bin/chromedriver ]] || pkgs+=(chromium-driver)
[[ $dev -eq 0 ]] || have shellcheck || pkgs+=(shellcheck)
have cargo || notes+=("cargo not found: install the Rust toolchain (rustup) to build the services")

# `apt-get download` (base image) needs package lists; a new machine may have none.
apt_lists_ok() { compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; }

# paho-mqtt (Python), for tests/it and `lambdaless bench broker` (LAMBDALESS_PAHO_PYTHON).
LL_PAHO_VENV="$LL_CACHE_DIR/paho-venv"
paho_ok() { "$LL_PAHO_VENV/bin/python" -c 'import paho.mqtt.client' >/dev/null 2>&1; }

if [[ $check -eq 1 ]]; then
  paho_ok || notes+=("paho-mqtt venv missing at $LL_PAHO_VENV")
  apt_lists_ok || notes+=("apt package lists are empty (apt-get update)")
  [[ ${#pkgs[@]} -eq 0 ]] || notes+=("missing Debian packages: ${pkgs[*]}")
  if have docker && ! docker info >/dev/null 2>&1; then notes+=("the Docker daemon is not reachable"); fi
  if [[ ${#notes[@]} -gt 0 ]]; then printf 'missing: %s\n' "${notes[@]}" >&2; exit 1; fi
  ok "all dependencies present"
  exit 0
fi

if [[ ${#pkgs[@]} -gt 0 ]] || ! apt_lists_ok; then
  have apt-get || die "not a Debian-like host: install ${pkgs[*]:-nothing} by hand (see the header of this script)"
  export DEBIAN_FRONTEND=noninteractive
  step "install-deps: apt-get update"
  as_root apt-get -o DPkg::Lock::Timeout=120 update -qq
  if [[ ${#pkgs[@]} -gt 0 ]]; then
    step "install-deps: apt-get install ${pkgs[*]}"
    as_root apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
    # Debian starts a Mosquitto service on 1883, the stack's port: the benchmark starts
    # its own Mosquitto on a free port, so the system one is switched off.
    if [[ " ${pkgs[*]} " == *" mosquitto "* ]] && have systemctl; then
      as_root systemctl disable --now mosquitto >/dev/null 2>&1 || true
    fi
  fi
fi

if ! paho_ok; then
  step "install-deps: paho-mqtt venv at $LL_PAHO_VENV"
  mkdir -p "$LL_CACHE_DIR"
  python3 -m venv "$LL_PAHO_VENV"
  "$LL_PAHO_VENV/bin/python" -m pip install -q 'paho-mqtt>=2,<3' || notes+=("pip could not install paho-mqtt into $LL_PAHO_VENV")
fi

if ! docker info >/dev/null 2>&1; then
  # A freshly installed engine may need starting; do not fight an init system we don't know.
  if have systemctl && systemctl list-unit-files docker.service >/dev/null 2>&1; then
    as_root systemctl start docker >/dev/null 2>&1 || true
  elif have service; then
    as_root service docker start >/dev/null 2>&1 || true
  fi
  docker info >/dev/null 2>&1 || notes+=("the Docker daemon is not reachable: start it, and make sure $(id -un) may use it")
fi

# ---------------------------------------------------------------- schemathesis
# The suite's OpenAPI test (tests/it/schemathesis.rs) runs schemathesis from PyPI, in its own
# venv under the cache dir so the system Python stays untouched; pip uses the machine's
# configured index. LAMBDALESS_SCHEMATHESIS (see lib.sh) names the binary the test runs.
if [[ ! -x "$LL_SCHEMATHESIS" ]]; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    as_root apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  step "install-deps: schemathesis into ${LL_SCHEMATHESIS_VENV}"
  rm -rf "$LL_SCHEMATHESIS_VENV"
  python3 -m venv "$LL_SCHEMATHESIS_VENV"
  "$LL_SCHEMATHESIS_VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==${LL_SCHEMATHESIS_VERSION}" \
    || notes+=("schemathesis could not be installed: the OpenAPI test will fail")
fi

for n in "${notes[@]}"; do warn "$n"; done
[[ ${#notes[@]} -eq 0 ]] || [[ "${notes[*]}" != *"Docker daemon"* ]] || exit 1
ok "install-deps: ready"
