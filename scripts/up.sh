#!/usr/bin/env bash
# Starts the whole lambdaless stack in Docker Compose and waits until it is ready.
#
#   scripts/up.sh [--emulator moto|localstack] [--no-cargo] [--timeout SECONDS]
#
#   1. scripts/install-deps.sh (quick when everything is there)
#   2. cargo build --release --workspace --bins: the seven binaries and nothing else (no test or
#      benchmark dependencies; scripts/test.sh adds those on the same target directory);
#      skipped with --no-cargo or LAMBDALESS_SKIP_CARGO=1; honours CARGO_TARGET_DIR
#   3. the emulator: LocalStack (localstack/localstack:4.14.0) when its image is here or a
#      registry answers a pull within 30 s, otherwise lambdaless/moto (localstack/compose.moto.yml);
#      LAMBDALESS_EMULATOR=moto|localstack (or --emulator) decides instead
#   4. scripts/images.sh: the base image and one image per binary (+ moto), offline
#   5. compose up -d --no-build, then waits until every long-running service is healthy and
#      `provision` exited 0 (timeout 180 s, LAMBDALESS_UP_TIMEOUT); on failure prints the
#      failing service's last logs and exits non-zero
# Stop it with scripts/down.sh.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

t_start="$(now_ms)"
emulator="${LAMBDALESS_EMULATOR:-}"
skip_cargo="${LAMBDALESS_SKIP_CARGO:-0}"
timeout_s="${LAMBDALESS_UP_TIMEOUT:-180}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --emulator) emulator="${2:?--emulator needs moto or localstack}"; shift ;;
    --emulator=*) emulator="${1#*=}" ;;
    --no-cargo) skip_cargo=1 ;;
    --timeout) timeout_s="${2:?--timeout needs seconds}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
case "$emulator" in ""|moto|localstack) ;; *) die "LAMBDALESS_EMULATOR must be moto or localstack, not '$emulator'" ;; esac

# ---------------------------------------------------------------- 1. dependencies
step "dependencies (cold: about 30 s of apt-get and pip; then under a second)"
"$LL_ROOT/scripts/install-deps.sh"
detect_compose
log "compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>/dev/null || "${COMPOSE[@]}" version 2>/dev/null | head -n1))"

# ---------------------------------------------------------------- 2. binaries
if [[ "$skip_cargo" != 1 ]]; then
  if [[ -x "${CARGO_TARGET_DIR:-$LL_ROOT/target}/release/api-gateway" ]]; then
    step "cargo build --release --workspace --bins (seconds when nothing changed)"
  else
    step "cargo build --release --workspace --bins (cold: about 7 min on 2 cores; cargo's progress follows)"
  fi
  t0="$(now_ms)"
  use_lint_wrapper
  # --timings: target/cargo-timings/cargo-timing.html shows where a build's time went
  # (scripts/build-costs.py summarises it; docs/build-costs.md has the cold figures).
  (cd "$LL_ROOT" && cargo build --release --workspace --bins --timings)
  ok "binaries built ($(since "$t0"))"
fi

# ---------------------------------------------------------------- 3. emulator
if [[ -z "$emulator" ]]; then
  if image_exists "$LL_LOCALSTACK_IMAGE"; then
    emulator=localstack
  else
    # A registry that answers within 30 s gets all the time the download needs (~1 GB);
    # one that fails or stays silent means: no registry here, use moto.
    step "emulator: trying to pull $LL_LOCALSTACK_IMAGE"
    pull_log="$(mktemp "${TMPDIR:-/tmp}/lambdaless-pull.XXXXXX")"
    docker pull "$LL_LOCALSTACK_IMAGE" >"$pull_log" 2>&1 &
    pull_pid=$!
    pull_rc=""
    for _ in $(seq 1 60); do
      if ! kill -0 "$pull_pid" 2>/dev/null; then pull_rc=0; wait "$pull_pid" || pull_rc=$?; break; fi
      if grep -q 'Pulling from' "$pull_log"; then
        log "emulator: the registry answered, downloading LocalStack (once)..."
        pull_rc=0; wait "$pull_pid" || pull_rc=$?
        break
      fi
      sleep 0.5
    done
    if [[ -z "$pull_rc" ]]; then kill "$pull_pid" 2>/dev/null || true; wait "$pull_pid" 2>/dev/null || true; fi
    if [[ "$pull_rc" == 0 ]] && image_exists "$LL_LOCALSTACK_IMAGE"; then
      emulator=localstack
    else
      log "emulator: no registry ($(tail -n1 "$pull_log" | cut -c1-120)): using $LL_MOTO_IMAGE (moto server) instead"
      emulator=moto
    fi
    rm -f "$pull_log"
  fi
elif [[ "$emulator" == localstack ]] && ! image_exists "$LL_LOCALSTACK_IMAGE"; then
  step "emulator: pulling $LL_LOCALSTACK_IMAGE"
  docker pull "$LL_LOCALSTACK_IMAGE" || die "cannot pull $LL_LOCALSTACK_IMAGE (no registry? try LAMBDALESS_EMULATOR=moto)"
fi
log "emulator: $emulator"

# ---------------------------------------------------------------- 4. images
image_names=(services)
[[ "$emulator" != moto ]] || image_names+=(moto)
step "images (cold: about 40 s for the base, seven services and moto; then seconds)"
"$LL_ROOT/scripts/images.sh" --only "${image_names[@]}"

# ---------------------------------------------------------------- 5. compose up + wait
previous="$(saved_emulator)"
if [[ -n "$previous" && "$previous" != "$emulator" ]]; then
  log "switching emulator from $previous to $emulator: removing the old stack first"
  compose_run "$previous" down --remove-orphans >/dev/null 2>&1 || true
fi
save_emulator "$emulator"

step "starting the stack (project $LL_PROJECT, emulator $emulator; about 15 s to healthy)"
up_log="$(mktemp "${TMPDIR:-/tmp}/lambdaless-up.XXXXXX")"
trap 'rm -f "$up_log"' EXIT
# `up` itself waits for the depends_on conditions (emulator healthy, provision done): run it
# in the background and report progress meanwhile.
compose_run "$emulator" up -d --no-build --remove-orphans >"$up_log" 2>&1 &
up_pid=$!

# Container of a compose service in our project (one-off `run` containers excluded).
container_of() {
  docker ps -a -q --filter "label=com.docker.compose.project=$LL_PROJECT" \
    --filter "label=com.docker.compose.service=$1" --filter "label=com.docker.compose.oneoff=False" | head -n1
}
# One word per service: missing | created | starting | healthy | unhealthy | running |
# restarting | crashloop (restarted 3+ times and not healthy) | completed (exited 0) | exited:N
service_state() {
  local cid st status health code restarts
  cid="$(container_of "$1")"
  [[ -n "$cid" ]] || { echo missing; return; }
  st="$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}} {{.State.ExitCode}} {{.RestartCount}}' "$cid" 2>/dev/null)" || { echo missing; return; }
  read -r status health code restarts <<<"$st"
  if [[ "${restarts:-0}" -ge 3 && "$health" != healthy ]]; then echo crashloop; return; fi
  case "$status" in
    running) if [[ "$health" == "-" ]]; then echo running; else echo "$health"; fi ;;
    exited|dead) if [[ "$code" == 0 ]]; then echo completed; else echo "exited:$code"; fi ;;
    *) echo "$status" ;;
  esac
}

show_logs() {
  local svc="$1"
  warn "last logs of $svc:"
  compose_run "$emulator" logs --no-color --tail 60 "$svc" >&2 2>&1 || true
}

services_all=("${LL_LONG_RUNNING[@]}" provision)
deadline=$(( $(date +%s) + timeout_s ))
last_line="" last_print=0 up_rc="" failed="" up_done=0
while :; do
  if [[ $up_done -eq 0 ]] && ! kill -0 "$up_pid" 2>/dev/null; then
    up_rc=0; wait "$up_pid" || up_rc=$?
    up_done=1
  fi
  states=() all_ready=1 line=""
  for svc in "${services_all[@]}"; do
    st="$(service_state "$svc")"
    states+=("$svc=$st")
    if [[ "$svc" == provision ]]; then
      [[ "$st" == completed ]] || all_ready=0
      [[ "$st" != exited:* ]] || failed="$svc"
    else
      [[ "$st" == healthy ]] || all_ready=0
      case "$st" in exited:*|completed|unhealthy|crashloop|dead) failed="$svc" ;; esac
    fi
  done
  line="${states[*]}"
  now="$(date +%s)"
  if [[ "$line" != "$last_line" || $((now - last_print)) -ge 10 ]]; then
    log "waiting $((now - deadline + timeout_s))s: $line"
    last_line="$line" last_print="$now"
  fi
  if [[ $all_ready -eq 1 ]]; then break; fi
  if [[ -n "$failed" ]]; then
    # Give `up` a few seconds to report its own error first.
    failed_since="${failed_since:-$now}"
    if [[ $up_done -eq 0 && $((now - failed_since)) -lt 5 ]]; then sleep 1; continue; fi
    [[ $up_done -eq 1 ]] || kill "$up_pid" 2>/dev/null || true
    cat "$up_log" >&2
    show_logs "$failed"
    die "$failed failed to start (state: $(service_state "$failed")); stop everything with scripts/down.sh"
  fi
  if [[ $up_done -eq 1 && "$up_rc" != 0 ]]; then
    cat "$up_log" >&2
    for svc in "${services_all[@]}"; do
      st="$(service_state "$svc")"
      [[ "$st" == healthy || "$st" == completed ]] || show_logs "$svc"
    done
    die "compose up failed (exit $up_rc)"
  fi
  if [[ $now -ge $deadline ]]; then
    [[ $up_done -eq 1 ]] || kill "$up_pid" 2>/dev/null || true
    for svc in "${services_all[@]}"; do
      st="$(service_state "$svc")"
      [[ "$st" == healthy || "$st" == completed ]] || show_logs "$svc"
    done
    die "the stack was not ready after ${timeout_s}s: $line"
  fi
  sleep 1
done
# `up` returns once the last containers are started; they are all healthy already.
[[ $up_done -eq 1 ]] || wait "$up_pid" || true

ok "lambdaless is up in $(since "$t_start") (emulator: $emulator)"
cat <<EOF
  AWS emulator     http://localhost:4566      ($emulator; AWS_ENDPOINT_URL=http://localhost:4566 AWS_REGION=us-east-1, key test/test)
  MQTT broker      mqtt://localhost:1883      ws://localhost:8083   (user local, password local)
  API gateway      http://localhost:8080      x-api-key: local-dev-key   (/openapi.json, /graphql, /users, /fetch/{id})
  Streamer         http://localhost:8081      x-api-key: local-dev-key   (/stream/{table}, /dump)
  Logs             ${COMPOSE[*]} -p $LL_PROJECT logs -f [SERVICE]
  Stop             scripts/down.sh
EOF
