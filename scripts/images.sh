#!/usr/bin/env bash
# Builds the lambdaless container images without pulling anything from a registry.
#
#   scripts/images.sh [--only NAME...] [--force] [--list]
#
# NAME is one of: base, moto, services (all Rust images), all, or a binary name
# (broker api-gateway mover mqtt-api fetch-responder streamer lambdaless).
# Default: all (base, every Rust image, moto). Rust images need the binaries; moto needs
# nothing from cargo (~1 min cold, then skipped while its recipe is unchanged).
#
#   lambdaless/base:bookworm   rootfs made of Debian packages (libc6, libgcc-s1, ca-certificates)
#                              fetched with `apt-get download`, `docker import`ed.
#   lambdaless/<bin>:TAG       (TAG = $LAMBDALESS_IMAGE_TAG or latest) base + the host-built ${CARGO_TARGET_DIR:-target}/release/<bin>
#                              (Dockerfile.prebuilt); build the binaries first
#                              (`cargo build --release --workspace --bins`, as scripts/up.sh does).
#   lambdaless/moto:latest     the AWS emulator fallback (localstack/moto/build.sh).
#
# Each image carries the label io.lambdaless.inputs = sha256 of its inputs (binary, config,
# Dockerfile, base image id / recipe); an image whose label matches is skipped.
# Environment: CARGO_TARGET_DIR, LAMBDALESS_FORCE=1 (= --force).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Debian packages of the base image. Rust binaries built on bookworm with the default
# (glibc) target need libc.so.6, libm.so.6, libgcc_s.so.1 and ld-linux-x86-64.so.2 only;
# a crate that links another system library needs its package added here.
BASE_PACKAGES=(libc6 libgcc-s1 ca-certificates)
# Shared libraries that the base image provides (checked against each binary's DT_NEEDED).
BASE_SONAMES_RE='^(ld-linux-x86-64\.so\.2|lib(c|m|dl|rt|pthread|util|resolv|anl|gcc_s)\.so\.[0-9]+)$'
BASE_UID=10001

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

force="${LAMBDALESS_FORCE:-0}"
want=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --only) shift; while [[ $# -gt 0 && "$1" != --* ]]; do want+=("$1"); shift; done; continue ;;
    --force) force=1 ;;
    --list) printf '%s\n' all base services moto "${LL_SERVICES[@]}"; exit 0 ;;
    -h|--help) usage; exit 0 ;;
    *) want+=("$1") ;;
  esac
  shift
done
[[ ${#want[@]} -gt 0 ]] || want=(all)

# Expand the names into an ordered build list (base before the Rust images).
do_base=0 do_moto=0 services=()
for name in "${want[@]}"; do
  case "$name" in
    all) do_base=1; do_moto=1; services=("${LL_SERVICES[@]}") ;;
    base) do_base=1 ;;
    moto|localstack) do_moto=1 ;;
    services) services=("${LL_SERVICES[@]}") ;;
    *)
      found=0
      for s in "${LL_SERVICES[@]}"; do [[ "$s" == "$name" ]] && found=1; done
      [[ $found -eq 1 ]] || die "unknown image '$name' (try --list)"
      services+=("$name") ;;
  esac
done
# The Rust images are built FROM the base image: make sure it is current too.
[[ ${#services[@]} -eq 0 ]] || do_base=1
# De-duplicate, keeping the order.
if [[ ${#services[@]} -gt 0 ]]; then
  mapfile -t services < <(printf '%s\n' "${services[@]}" | awk '!seen[$0]++')
fi

docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon (is it running, and may $(id -un) use it?)"

target_dir="${CARGO_TARGET_DIR:-$LL_ROOT/target}"
[[ "$target_dir" = /* ]] || target_dir="$LL_ROOT/$target_dir"

tmp_root="$(mktemp -d "${TMPDIR:-/tmp}/lambdaless-images.XXXXXX")"
trap 'rm -rf "$tmp_root"' EXIT

# One summary line per image, in a file per image (service images are built in parallel
# subshells): record RESULT IMAGE TIME SIZE.
record() {
  printf '%-8s %-34s %8s  %s\n' "$1" "$2" "$3" "$4" >"$tmp_root/summary-${2//[\/:]/_}"
}

# ---------------------------------------------------------------- base image
# Writes the base rootfs into directory $1 (the recipe: its text is part of the image hash).
base_rootfs() {
  local rootfs="$1" debs="$tmp_root/debs"
  mkdir -p "$debs" "$rootfs"
  # apt-get download writes into the current directory; as root it warns that the _apt
  # user cannot write there, which is harmless.
  local p deb attempt
  for attempt in 1 2; do
    (
      cd "$debs"
      apt-get download -q "${BASE_PACKAGES[@]}" 2>&1 | grep -v -e '^Get:' -e '^Fetched' -e 'unsandboxed' >&2 || true
    )
    [[ $(compgen -G "$debs/*.deb" | wc -l) -lt ${#BASE_PACKAGES[@]} ]] || break
    # Stale or missing package lists (a mirror moved on): refresh them once.
    [[ $attempt -eq 2 ]] || { log "base: apt-get update"; as_root apt-get -qq update >&2 || true; }
  done
  for p in "${BASE_PACKAGES[@]}"; do
    deb="$(compgen -G "$debs/${p}_*.deb" | head -n1 || true)"
    [[ -n "$deb" ]] || die "apt-get download $p failed (see above; scripts/install-deps.sh sets apt up)"
    dpkg-deb -x "$deb" "$rootfs"
  done
  # ca-certificates builds its bundle in postinst (not run here): build it the same way.
  mkdir -p "$rootfs/etc/ssl/certs"
  find "$rootfs/usr/share/ca-certificates" -name '*.crt' -print0 | sort -z | xargs -0 cat >"$rootfs/etc/ssl/certs/ca-certificates.crt"
  # Drop what a static service never uses: docs, locales, iconv modules, maintainer data.
  rm -rf "$rootfs/usr/share/doc" "$rootfs/usr/share/man" "$rootfs/usr/share/locale" "$rootfs/usr/share/lintian" \
    "$rootfs/usr/share/ca-certificates" "$rootfs/usr/sbin/update-ca-certificates" "$rootfs/etc/ca-certificates" \
    "$rootfs/usr/lib/x86_64-linux-gnu/gconv" "$rootfs/usr/share/gcc" "$rootfs/etc/ld.so.conf.d"
  mkdir -p "$rootfs/etc/ld.so.conf.d" "$rootfs/tmp" "$rootfs/root" "$rootfs/var/tmp" "$rootfs/etc/lambdaless"
  chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
  chmod 0700 "$rootfs/root"
  cat >"$rootfs/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
lambdaless:x:${BASE_UID}:${BASE_UID}:lambdaless:/tmp:/usr/sbin/nologin
PASSWD
  cat >"$rootfs/etc/group" <<GROUP
root:x:0:
nogroup:x:65534:
lambdaless:x:${BASE_UID}:
GROUP
  printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nservices: files\nprotocols: files\n' >"$rootfs/etc/nsswitch.conf"
  printf 'include /etc/ld.so.conf.d/*.conf\n' >"$rootfs/etc/ld.so.conf"
  printf '/usr/local/lib\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n' >"$rootfs/etc/ld.so.conf.d/x86_64-linux-gnu.conf"
  printf 'PRETTY_NAME="lambdaless base (Debian 12 bookworm packages)"\nID=lambdaless\nID_LIKE=debian\nVERSION_CODENAME=bookworm\n' >"$rootfs/etc/os-release"
  # The loader cache (the loader also finds the multiarch directories without it).
  if have ldconfig; then ldconfig -r "$rootfs" 2>/dev/null || true
  elif [[ -x /sbin/ldconfig ]]; then /sbin/ldconfig -r "$rootfs" 2>/dev/null || true
  fi
}

base_inputs() {
  # Recipe text + package list + the versions apt would fetch now (a Debian security update
  # of libc6 rebuilds the base and so every service image).
  {
    declare -f base_rootfs base_import
    printf '%s\n' "${BASE_PACKAGES[@]}" "$BASE_UID"
    apt-cache policy "${BASE_PACKAGES[@]}" 2>/dev/null | awk '/^[^ ]/ {p=$1} /Candidate:/ {print p, $2}'
  } | sha256_stdin
}

base_import() {
  local rootfs="$1" inputs="$2"
  tar -C "$rootfs" --numeric-owner --owner=0 --group=0 --sort=name --mtime='2023-06-10 00:00Z' -cf - . |
    docker import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
      --change 'ENV SSL_CERT_DIR=/etc/ssl/certs' \
      --change 'WORKDIR /' \
      --change "USER ${BASE_UID}:${BASE_UID}" \
      --change "LABEL ${LL_INPUTS_LABEL}=${inputs}" \
      --change 'LABEL org.opencontainers.image.title=lambdaless-base' \
      --change 'LABEL org.opencontainers.image.description="glibc runtime for lambdaless binaries, from Debian bookworm packages"' \
      -m "lambdaless base from Debian packages: ${BASE_PACKAGES[*]}" \
      - "$LL_BASE_IMAGE" >/dev/null
}

build_base() {
  local t0 inputs
  t0="$(now_ms)"
  inputs="$(base_inputs)"
  if [[ "$force" != 1 ]] && [[ "$(image_inputs "$LL_BASE_IMAGE")" == "$inputs" ]]; then
    log "base: up to date ($LL_BASE_IMAGE)"
    record skipped "$LL_BASE_IMAGE" "$(since "$t0")" "$(image_size_mb "$LL_BASE_IMAGE")"
    return
  fi
  step "base: building $LL_BASE_IMAGE from Debian packages (${BASE_PACKAGES[*]})"
  local rootfs="$tmp_root/base-rootfs" old
  old="$(image_id "$LL_BASE_IMAGE")"
  base_rootfs "$rootfs"
  base_import "$rootfs" "$inputs"
  remove_replaced_image "$old" "$LL_BASE_IMAGE"
  ok "base: built $LL_BASE_IMAGE ($(image_size_mb "$LL_BASE_IMAGE"), $(since "$t0"))"
  record built "$LL_BASE_IMAGE" "$(since "$t0")" "$(image_size_mb "$LL_BASE_IMAGE")"
}

# ---------------------------------------------------------------- service images
check_needed_libs() {
  local bin="$1" lib bad=()
  have readelf || return 0
  while read -r lib; do
    [[ "$lib" =~ $BASE_SONAMES_RE ]] || bad+=("$lib")
  done < <(readelf -d "$bin" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  if [[ ${#bad[@]} -gt 0 ]]; then
    die "$bin links ${bad[*]}, which $LL_BASE_IMAGE does not have: add its Debian package to BASE_PACKAGES in scripts/images.sh (and BASE_SONAMES_RE), or avoid the system library (e.g. rustls instead of openssl)"
  fi
}

build_service() {
  local name="$1" t0 bin cfg inputs image="lambdaless/$1:${LL_TAG}"
  t0="$(now_ms)"
  bin="$target_dir/release/$name"
  cfg="$LL_ROOT/config/$name.toml"
  [[ -x "$bin" ]] || die "$name: no binary at $bin; build it first: cargo build --release --workspace --bins"
  check_needed_libs "$bin"
  inputs="$(
    {
      sha256_files "$bin" "$LL_ROOT/Dockerfile.prebuilt"
      if [[ -f "$cfg" ]]; then sha256_files "$cfg"; else echo "no-config"; fi
      image_id "$LL_BASE_IMAGE"
      declare -f stage_service
    } | sha256_stdin
  )"
  if [[ "$force" != 1 ]] && [[ "$(image_inputs "$image")" == "$inputs" ]]; then
    log "$name: up to date ($image)"
    record skipped "$image" "$(since "$t0")" "$(image_size_mb "$image")"
    return
  fi
  step "$name: building $image from $bin"
  local ctx="$tmp_root/ctx-$name" old
  old="$(image_id "$image")"
  stage_service "$name" "$bin" "$cfg" "$ctx"
  docker_build -q -f "$ctx/Dockerfile" --build-arg "SERVICE=$name" \
    --label "${LL_INPUTS_LABEL}=${inputs}" \
    --label "org.opencontainers.image.title=lambdaless-$name" \
    -t "$image" "$ctx" >/dev/null
  remove_replaced_image "$old" "$image"
  ok "$name: built $image ($(image_size_mb "$image"), $(since "$t0"))"
  record built "$image" "$(since "$t0")" "$(image_size_mb "$image")"
}

# The build context of one service image: see the header of Dockerfile.prebuilt.
stage_service() {
  local name="$1" bin="$2" cfg="$3" ctx="$4"
  mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/etc/lambdaless"
  cp "$LL_ROOT/Dockerfile.prebuilt" "$ctx/Dockerfile"
  # A hard link avoids copying ~20 MB when the temp dir is on the same filesystem.
  ln "$bin" "$ctx/rootfs/usr/local/bin/service" 2>/dev/null || cp "$bin" "$ctx/rootfs/usr/local/bin/service"
  ln -s service "$ctx/rootfs/usr/local/bin/$name"
  if [[ -f "$cfg" ]]; then cp "$cfg" "$ctx/rootfs/etc/lambdaless/$name.toml"; else : >"$ctx/rootfs/etc/lambdaless/$name.toml"; fi
  chmod 0755 "$ctx/rootfs/usr/local/bin/service"
  chmod 0644 "$ctx/rootfs/etc/lambdaless/$name.toml"
}

# ---------------------------------------------------------------- moto
build_moto() {
  local t0 rc=0 out
  t0="$(now_ms)"
  out="$(LAMBDALESS_FORCE="$force" "$LL_ROOT/localstack/moto/build.sh")" || rc=$?
  [[ $rc -eq 0 ]] || die "moto: image build failed"
  record "$out" "$LL_MOTO_IMAGE" "$(since "$t0")" "$(image_size_mb "$LL_MOTO_IMAGE")"
}

# ---------------------------------------------------------------- main
t_all="$(now_ms)"
# Fail early, and about every missing binary at once.
missing=()
for s in "${services[@]}"; do [[ -x "$target_dir/release/$s" ]] || missing+=("$s"); done
[[ ${#missing[@]} -eq 0 ]] || die "no binary for: ${missing[*]} (looked in $target_dir/release); build them first: cargo build --release --workspace --bins"

[[ $do_base -eq 0 ]] || build_base

# The legacy builder spends ~1 s per Dockerfile step creating containers, mostly waiting on
# the daemon: building the service images side by side is several times faster.
jobs_max="${LAMBDALESS_IMAGE_JOBS:-8}"
failed=()
batch=()
flush_batch() {
  local s rc
  for s in "${batch[@]}"; do
    rc=0
    wait "${pid_of[$s]}" || rc=$?
    cat "$tmp_root/job-$s.log" >&2
    [[ $rc -eq 0 ]] || failed+=("$s")
  done
  batch=()
}
declare -A pid_of=()
for s in "${services[@]}"; do
  ( build_service "$s" ) >"$tmp_root/job-$s.log" 2>&1 &
  pid_of[$s]=$!
  batch+=("$s")
  [[ ${#batch[@]} -lt $jobs_max ]] || flush_batch
done
[[ ${#batch[@]} -eq 0 ]] || flush_batch

[[ $do_moto -eq 0 ]] || build_moto || failed+=(moto)

printf '%-8s %-34s %8s  %s\n' result image time size
cat "$tmp_root"/summary-lambdaless_base_bookworm 2>/dev/null || true
for s in "${services[@]}"; do cat "$tmp_root/summary-lambdaless_${s}_latest" 2>/dev/null || true; done
[[ $do_moto -eq 0 ]] || cat "$tmp_root/summary-lambdaless_moto_latest" 2>/dev/null || true
[[ ${#failed[@]} -eq 0 ]] || die "failed to build: ${failed[*]} (see the messages above)"
printf 'images.sh: done in %s\n' "$(since "$t_all")"
