# shellcheck shell=bash disable=SC2034
# Shared helpers for the lambdaless scripts. Source it; do not run it.
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Repository root (this file lives in <root>/scripts).
LL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Per-checkout state (emulator choice, ...); must be gitignored.
LL_STATE_DIR="${LL_ROOT}/.lambdaless"
# Cross-checkout cache (downloaded wheels).
LL_CACHE_DIR="${LAMBDALESS_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/lambdaless}"
# schemathesis (the suite's OpenAPI test): pinned version, its venv and binary.
LL_SCHEMATHESIS_VERSION="4.32.5"
LL_SCHEMATHESIS_VENV="${LL_CACHE_DIR}/venv-schemathesis-${LL_SCHEMATHESIS_VERSION}"
LL_SCHEMATHESIS="${LAMBDALESS_SCHEMATHESIS:-${LL_SCHEMATHESIS_VENV}/bin/schemathesis}"
# Compose project name: fixed so that up.sh/down.sh/tests agree whatever the checkout directory is called.
LL_PROJECT="${COMPOSE_PROJECT_NAME:-lambdaless}"
# LocalStack tag pinned by the spec (the last one that starts without an auth token).
LL_LOCALSTACK_IMAGE="localstack/localstack:4.14.0"
# Tag of the service images: lets several checkouts or CI runs keep their own builds apart.
LL_TAG="${LAMBDALESS_IMAGE_TAG:-latest}"
LL_MOTO_IMAGE="lambdaless/moto:latest"
LL_BASE_IMAGE="lambdaless/base:bookworm"
# Every Rust binary that gets its own image (the CLI `lambdaless` runs the `provision` one-shot).
LL_SERVICES=(broker api-gateway mover mqtt-api fetch-responder streamer lambdaless)
# Compose services that keep running and must become healthy (provision is a one-shot).
LL_LONG_RUNNING=(localstack broker api-gateway mover mqtt-api fetch-responder streamer)
# Label that stores the sha256 of an image's inputs; a matching label means "up to date".
LL_INPUTS_LABEL="io.lambdaless.inputs"

# ---------------------------------------------------------------- logging
if [[ -t 2 && -z "${NO_COLOR:-}" ]]; then
  _ll_c_dim=$'\e[2m' _ll_c_red=$'\e[31m' _ll_c_yel=$'\e[33m' _ll_c_grn=$'\e[32m' _ll_c_bld=$'\e[1m' _ll_c_off=$'\e[0m'
else
  _ll_c_dim='' _ll_c_red='' _ll_c_yel='' _ll_c_grn='' _ll_c_bld='' _ll_c_off=''
fi
_ll_ts() { date +%H:%M:%S; }
log()  { printf '%s%s%s %s\n' "$_ll_c_dim" "$(_ll_ts)" "$_ll_c_off" "$*" >&2; }
step() { printf '%s%s%s %s==> %s%s\n' "$_ll_c_dim" "$(_ll_ts)" "$_ll_c_off" "$_ll_c_bld" "$*" "$_ll_c_off" >&2; }
ok()   { printf '%s%s%s %s%s%s\n' "$_ll_c_dim" "$(_ll_ts)" "$_ll_c_off" "$_ll_c_grn" "$*" "$_ll_c_off" >&2; }
warn() { printf '%s%s%s %swarning:%s %s\n' "$_ll_c_dim" "$(_ll_ts)" "$_ll_c_off" "$_ll_c_yel" "$_ll_c_off" "$*" >&2; }
die()  { printf '%s%s%s %serror:%s %s\n' "$_ll_c_dim" "$(_ll_ts)" "$_ll_c_off" "$_ll_c_red" "$_ll_c_off" "$*" >&2; exit 1; }

have() { command -v "$1" >/dev/null 2>&1; }

# Milliseconds since the epoch, and a human duration since a start value.
# Lint while compiling: clippy-driver compiles the workspace's own crates (lints included,
# warnings denied) and rustc the dependencies. up.sh and test.sh both use it, so the
# workspace crates that up.sh compiled are fresh for test.sh (a different wrapper is a
# different fingerprint: measured 6 min of recompiling). Without clippy installed, plain rustc.
use_lint_wrapper() {
  local driver
  driver="$(rustc --print sysroot)/bin/clippy-driver"
  if [[ -x "$driver" ]]; then
    RUSTC_WORKSPACE_WRAPPER="$driver"
    CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
    export RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS
  fi
}

now_ms() { date +%s%3N; }
since() { local ms=$(( $(now_ms) - $1 )); printf '%d.%01ds' $((ms / 1000)) $(((ms % 1000) / 100)); }

# Run as root: directly if we are root, through sudo otherwise.
as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif have sudo; then sudo "$@"
  else die "need root for: $* (install sudo or run as root)"
  fi
}

# ---------------------------------------------------------------- hashing
# sha256 of stdin / of a list of files (content and name, in the given order).
sha256_stdin() { sha256sum | cut -d' ' -f1; }
sha256_files() {
  local f
  for f in "$@"; do
    printf '%s\0' "${f#"$LL_ROOT"/}"
    sha256sum <"$f" | cut -d' ' -f1
  done | sha256_stdin
}

# ---------------------------------------------------------------- docker
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
# Value of our inputs label on an image, empty when absent.
image_inputs() {
  docker image inspect -f "{{ index .Config.Labels \"${LL_INPUTS_LABEL}\" }}" "$1" 2>/dev/null | sed 's/^<no value>$//' || true
}
# After a rebuild, remove the image that the tag pointed to before, unless something still
# uses it (a container, or a child image): repeated builds must not fill the disk.
remove_replaced_image() {
  local old="$1" tag="$2"
  [[ -n "$old" && "$old" != "$(image_id "$tag")" ]] || return 0
  docker rmi "$old" >/dev/null 2>&1 || true
}
image_size_mb() {
  local b
  b="$(docker image inspect -f '{{.Size}}' "$1" 2>/dev/null || echo 0)"
  awk -v b="$b" 'BEGIN { printf "%.1f MB", b / 1000000 }'
}

# `docker build` that works without pulling anything: BuildKit when the buildx plugin is
# there (DOCKER_BUILDKIT=0 can force the legacy builder), the legacy builder otherwise
# (a CLI without buildx refuses DOCKER_BUILDKIT=1).
docker_build() {
  if [[ "${DOCKER_BUILDKIT:-}" == 0 ]] || ! docker buildx version >/dev/null 2>&1; then
    DOCKER_BUILDKIT=0 docker build --force-rm "$@" 2> >(grep -v -e 'DEPRECATED: The legacy builder' -e 'Install the buildx component' \
      -e 'BuildKit is currently disabled' -e '^ *environment-variable\.$' -e 'docs.docker.com/go/buildx' -e '^ *$' >&2)
  else
    docker build "$@"
  fi
}

# ---------------------------------------------------------------- compose
# Fills the array COMPOSE with the compose command: `docker compose` (v2) when the plugin
# is there, `docker-compose` (v1.29+ or v2 standalone) otherwise. LAMBDALESS_COMPOSE overrides.
COMPOSE=()
detect_compose() {
  if [[ -n "${LAMBDALESS_COMPOSE:-}" ]]; then
    read -r -a COMPOSE <<<"$LAMBDALESS_COMPOSE"
  elif docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
  elif have docker-compose; then
    COMPOSE=(docker-compose)
  else
    die "no compose tool: install the docker compose plugin or docker-compose (scripts/install-deps.sh)"
  fi
}

# The compose file set for an emulator (localstack | moto), as -f arguments in COMPOSE_ARGS.
COMPOSE_ARGS=()
compose_args_for() {
  COMPOSE_ARGS=(-p "$LL_PROJECT" -f "$LL_ROOT/docker-compose.yml")
  case "$1" in
    localstack) ;;
    moto) COMPOSE_ARGS+=(-f "$LL_ROOT/localstack/compose.moto.yml") ;;
    *) die "unknown emulator '$1' (expected localstack or moto)" ;;
  esac
}

# Run compose with the file set of the given emulator: compose_run EMULATOR ARGS...
compose_run() {
  local emulator="$1"; shift
  [[ ${#COMPOSE[@]} -gt 0 ]] || detect_compose
  compose_args_for "$emulator"
  "${COMPOSE[@]}" "${COMPOSE_ARGS[@]}" "$@"
}

# The emulator that up.sh used last in this checkout (empty when unknown).
saved_emulator() { cat "$LL_STATE_DIR/emulator" 2>/dev/null || true; }
save_emulator() { mkdir -p "$LL_STATE_DIR" && printf '%s\n' "$1" >"$LL_STATE_DIR/emulator"; }
