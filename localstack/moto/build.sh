#!/usr/bin/env bash
# Builds lambdaless/moto:latest, the AWS emulator (SQS + DynamoDB on port 4566) for machines
# that cannot pull localstack/localstack from a registry. Nothing is pulled:
#   1. rootfs: Debian bookworm's python3 and its dependency closure only (no shell, no package
#      manager), unpacked by `mmdebstrap --variant=extract` from the host's own apt sources
#      (/etc/apt/sources.list.d/debian.sources); cached as a tarball and imported as
#      lambdaless/moto-rootfs:bookworm (used below to run the image's own python3);
#   2. moto and its dependencies: the wheels locked in requirements.txt, downloaded by the
#      HOST's pip (its index, proxy and TLS settings) into a cache and installed with --target
#      for CPython 3.11 / manylinux x86_64 (no compiler; nothing is fetched in a container);
#   3. everything byte-compiled by the image's python3 (an unprivileged container cannot
#      write .pyc files: without them every start would recompile), a user moto (uid 10001),
#      the health check; the tree `docker import`ed as ONE layer with its runtime config.
#      (A Dockerfile would cost ~4 s per metadata step on a fuse-overlayfs daemon.)
# Prints "built" or "skipped" on stdout (logs go to stderr). Called by scripts/images.sh
# (`scripts/images.sh --only moto`); LAMBDALESS_FORCE=1 rebuilds even when up to date.
# mmdebstrap runs as root, or in its unshare mode as a user with subuids.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR/../.. source=scripts/lib.sh
. "$here/../../scripts/lib.sh"

image="$LL_MOTO_IMAGE"
rootfs_image="lambdaless/moto-rootfs:bookworm"
suite=bookworm
pyver=3.11
sources="${LAMBDALESS_APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}"
force="${LAMBDALESS_FORCE:-0}"
# Paths of the python3 package closure that nothing in the image uses.
rootfs_prune=(
  './usr/share/doc/*' './usr/share/man/*' './usr/share/locale/*' './usr/share/info/*' './usr/share/lintian/*'
  './usr/share/bug/*' './usr/lib/x86_64-linux-gnu/gconv/*' './var/lib/dpkg/*' './var/lib/apt/*' './var/cache/*'
  './usr/lib/python3.11/test/*' './usr/lib/python3.11/lib2to3/tests/*' './usr/lib/python3.11/idlelib/*'
  './dev/*'
)

# ---------------------------------------------------------------- 1. rootfs (recipe)
# Writes the pruned python3 rootfs tarball to $1.
make_rootfs_tar() {
  local out="$1" tarball="$tmp/rootfs.tar" mlog="$tmp/mmdebstrap.log" aptopts=() line
  have mmdebstrap || die "mmdebstrap is missing: run scripts/install-deps.sh"
  [[ -r "$sources" ]] || die "no apt sources at $sources (set LAMBDALESS_APT_SOURCES to a deb822 .sources file)"
  # Pass the host's Acquire::* settings on (proxy, a snapshot mirror without Valid-Until...).
  while IFS= read -r line; do aptopts+=(--aptopt="$line"); done < <(
    apt-config dump 2>/dev/null | grep -E '^Acquire::(https?|ftp)::Proxy|^Acquire::(Check-Valid-Until|Check-Date|Retries|ForceIPv4) ' || true
  )
  # variant=extract: python3 and its dependency closure, without the Essential set and
  # without maintainer scripts (hence no mmdebstrap hooks: step 3 does what matters).
  if ! mmdebstrap --variant=extract --include=python3 "${aptopts[@]}" \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-exclude=/usr/share/doc/*' \
      "$suite" "$tarball" "$sources" >"$mlog" 2>&1; then
    tail -n 40 "$mlog" >&2
    die "moto: mmdebstrap failed (log above)"
  fi
  tar --delete --wildcards -f "$tarball" "${rootfs_prune[@]}" 2>/dev/null || true
  mkdir -p "$(dirname "$out")"
  mv "$tarball" "$out.part" && mv "$out.part" "$out"
}

rootfs_inputs="$({ echo "$suite python3 extract"; printf '%s\n' "${rootfs_prune[@]}"; declare -f make_rootfs_tar; } | sha256_stdin)"
inputs="$({ sha256_files "$here"/build.sh "$here"/requirements.txt "$here"/healthcheck.py; echo "$rootfs_inputs"; } | sha256_stdin)"
if [[ "$force" != 1 && "$(image_inputs "$image")" == "$inputs" ]]; then
  log "moto: up to date ($image)"
  echo skipped
  exit 0
fi

t0="$(now_ms)"
step "moto: building $image ($(grep -m1 '^moto==' "$here/requirements.txt"), Debian $suite python3)"
py="$(command -v python3 || true)"
if [[ -z "$py" ]] || ! "$py" -m pip --version >/dev/null 2>&1; then
  die "the host needs python3 with pip to fetch moto's wheels (scripts/install-deps.sh)"
fi
tmp="$(mktemp -d "${TMPDIR:-/tmp}/lambdaless-moto.XXXXXX")"
# Removing ~150 MB of small files takes seconds on some disks: do it in the background.
trap 'rm -rf "$tmp" </dev/null >/dev/null 2>&1 &' EXIT

rootfs_tar="$LL_CACHE_DIR/moto-rootfs/${rootfs_inputs:0:16}.tar"
if [[ "$force" == 1 || ! -s "$rootfs_tar" ]]; then
  make_rootfs_tar "$rootfs_tar"
  log "moto: rootfs tarball ready ($(du -sh "$rootfs_tar" | cut -f1), $(since "$t0"))"
fi
if [[ "$(image_inputs "$rootfs_image")" != "$rootfs_inputs" ]]; then
  old_rootfs_image="$(image_id "$rootfs_image")"
  docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change "LABEL ${LL_INPUTS_LABEL}=${rootfs_inputs}" \
    -m "python3 and its dependencies from Debian $suite (mmdebstrap --variant=extract)" \
    "$rootfs_tar" "$rootfs_image" >/dev/null
  remove_replaced_image "$old_rootfs_image" "$rootfs_image"
fi
rootfs="$tmp/rootfs"
mkdir -p "$rootfs"
tar -C "$rootfs" -xf "$rootfs_tar"

# ---------------------------------------------------------------- 2. wheels -> site-packages
# Wheels for the image's interpreter (cp311, glibc 2.36). pip does not expand a
# manylinux_2_X platform to the older ones, so list them all.
pip_target=(--only-binary=:all: --implementation cp --python-version "$pyver" --abi "cp${pyver/./}" --abi abi3 --abi none)
for minor in $(seq 36 -1 17); do pip_target+=(--platform "manylinux_2_${minor}_x86_64"); done
pip_target+=(--platform manylinux2014_x86_64 --platform any)

wheels="$LL_CACHE_DIR/moto-wheels/$(sha256_files "$here/requirements.txt" | cut -c1-16)"
if [[ ! -f "$wheels/.complete" ]]; then
  log "moto: downloading wheels into $wheels"
  mkdir -p "$wheels"
  "$py" -m pip download -q --disable-pip-version-check --no-deps "${pip_target[@]}" -d "$wheels" -r "$here/requirements.txt"
  touch "$wheels/.complete"
fi
site="$rootfs/usr/local/lib/python$pyver/dist-packages"
# --no-index: only the cached wheels; --no-deps: requirements.txt is the complete lock.
"$py" -m pip install -q --disable-pip-version-check --no-warn-conflicts --no-index --find-links "$wheels" --no-deps \
  "${pip_target[@]}" --target "$site" -r "$here/requirements.txt" \
  2> >(grep -v -e "Running pip as the 'root' user" >&2)
# Console scripts carry the host interpreter's path (the image runs `python3 -m moto.server`);
# .pyc files must come from the image's own interpreter.
rm -rf "${site:?}/bin"
find "$site" -depth -name __pycache__ -type d -exec rm -rf {} +

# ---------------------------------------------------------------- 3. finish, compile, import
install -D -m 0644 "$here/healthcheck.py" "$rootfs/usr/local/lib/lambdaless/healthcheck.py"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nmoto:x:10001:10001:moto:/tmp:/usr/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\nmoto:x:10001:\n' >"$rootfs/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
mkdir -p "$rootfs/tmp" "$rootfs/var/tmp" "$rootfs/root"
chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
chmod 0700 "$rootfs/root"
# The image's python3 compiles the tree in place (bind mount; -s/-p record the final paths).
docker run --rm --network none -u "$(id -u):$(id -g)" -v "$rootfs:/target" "$rootfs_image" \
  /usr/bin/python3 -m compileall -q -j 0 -s /target -p / \
  "/target/usr/lib/python$pyver" "/target/usr/local/lib/python$pyver/dist-packages" /target/usr/local/lib/lambdaless >/dev/null
log "moto: rootfs compiled ($(du -sh "$rootfs" | cut -f1), $(since "$t0"))"

old_image="$(image_id "$image")"
# MOTO_ACCOUNT_ID: the account LocalStack uses, so queue URLs and ARNs look the same on both.
tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf - . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1' \
  --change 'ENV MOTO_PORT=4566 AWS_DEFAULT_REGION=us-east-1' \
  --change 'ENV MOTO_ACCOUNT_ID=000000000000' \
  --change 'USER 10001:10001' \
  --change 'WORKDIR /tmp' \
  --change 'EXPOSE 4566' \
  --change 'HEALTHCHECK --interval=2s --timeout=3s --start-period=5s --retries=30 CMD ["/usr/bin/python3", "/usr/local/lib/lambdaless/healthcheck.py"]' \
  --change 'ENTRYPOINT ["/usr/bin/python3", "-m", "moto.server"]' \
  --change 'CMD ["-H", "0.0.0.0", "-p", "4566"]' \
  --change "LABEL ${LL_INPUTS_LABEL}=${inputs}" \
  --change 'LABEL org.opencontainers.image.title=lambdaless-moto' \
  --change "LABEL org.opencontainers.image.description=\"moto server (SQS, DynamoDB) on Debian $suite python3, port 4566\"" \
  -m "moto server for lambdaless ($(grep -m1 '^moto==' "$here/requirements.txt"))" \
  - "$image" >/dev/null
# The server must import: a broken lock or wheel fails here, not at `compose up`.
docker run --rm --network none --entrypoint /usr/bin/python3 "$image" \
  -c 'import moto.server, moto.sqs.responses, moto.dynamodb.responses' >/dev/null \
  || die "moto: the image cannot import moto.server"
remove_replaced_image "$old_image" "$image"
ok "moto: built $image ($(image_size_mb "$image"), $(since "$t0"))"
echo built
