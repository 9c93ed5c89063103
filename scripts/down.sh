#!/usr/bin/env bash
# Stops and removes the lambdaless stack that scripts/up.sh started.
#
#   scripts/down.sh [--volumes]
#
#   --volumes   also remove the named volumes (LocalStack's download cache)
# Uses the same compose file set as up.sh did (remembered in .lambdaless/emulator; when that
# is gone, detected from the running emulator container). The images stay: scripts/up.sh
# starts again in seconds.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

extra=()
for arg in "$@"; do
  case "$arg" in
    -v|--volumes) extra+=(--volumes) ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown option $arg (see --help)" ;;
  esac
done

emulator="${LAMBDALESS_EMULATOR:-$(saved_emulator)}"
if [[ -z "$emulator" ]]; then
  cid="$(docker ps -a -q --filter "label=com.docker.compose.project=$LL_PROJECT" --filter "label=com.docker.compose.service=localstack" | head -n1)"
  if [[ -n "$cid" && "$(docker inspect -f '{{.Config.Image}}' "$cid" 2>/dev/null)" == "$LL_MOTO_IMAGE" ]]; then
    emulator=moto
  else
    emulator=localstack
  fi
fi

t0="$(now_ms)"
step "stopping lambdaless (project $LL_PROJECT, emulator $emulator)"
compose_run "$emulator" down --remove-orphans "${extra[@]}"
rm -f "$LL_STATE_DIR/emulator"
ok "lambdaless stopped ($(since "$t0"))"
