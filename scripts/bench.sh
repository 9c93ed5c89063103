#!/usr/bin/env bash
# Runs every benchmark and writes docs/benchmarks.md (tables, headline ratios,
# SVG charts). Never part of CI: it measures, it does not test.
#
#   scripts/bench.sh                      # the issue-sized run (≈ 10 min)
#   scripts/bench.sh --scale 0.2          # everything smaller and quicker
#   scripts/bench.sh --only broker,graphql
#   scripts/bench.sh load --duration 60   # the sustained mixed load instead
#
# 1. installs wrk and mosquitto (Debian packages) when missing, and through
#    scripts/install-deps.sh (run by up.sh) the paho-mqtt venv; the Mosquitto
#    system service is not used, the benchmark starts its own on loopback
# 2. starts the stack with scripts/up.sh, the gateway's per-principal rate
#    limit raised (LAMBDALESS_THROTTLE_RATE) so that wrk measures the server
# 3. runs `lambdaless bench all` (or the subcommand given) with the AWS
#    variables of the stack's emulator
# The stack stays up afterwards; scripts/down.sh stops it.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

missing=()
have wrk || missing+=(wrk)
have mosquitto || [[ -x /usr/sbin/mosquitto ]] || missing+=(mosquitto)
if [[ ${#missing[@]} -gt 0 ]]; then
  step "bench: apt-get install ${missing[*]}"
  as_root apt-get -o DPkg::Lock::Timeout=120 update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 \
    install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
mosquitto_bin="$(command -v mosquitto || echo /usr/sbin/mosquitto)"

export LAMBDALESS_THROTTLE_RATE="${LAMBDALESS_THROTTLE_RATE:-1000000}"
# The MQTT benchmarks use topics of their own (bench/...), beyond what a device may
# use: they log in as the stack's `service` user.
export LAMBDALESS_MQTT__USERNAME="${LAMBDALESS_MQTT__USERNAME:-service}"
export LAMBDALESS_MQTT__PASSWORD="${LAMBDALESS_MQTT__PASSWORD:-local-service}"
"$LL_ROOT/scripts/up.sh"

export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
cli="${CARGO_TARGET_DIR:-$LL_ROOT/target}/release/lambdaless"
[[ -x "$cli" ]] || die "$cli not built (run without LAMBDALESS_SKIP_CARGO)"

cd "$LL_ROOT"
case "${1:-}" in
  ""|--*) step "bench: lambdaless bench all $*"
          exec "$cli" bench all --mosquitto-bin "$mosquitto_bin" --out "$LL_ROOT/docs" "$@" ;;
  *)      step "bench: lambdaless bench $*"
          exec "$cli" bench "$@" ;;
esac
