#!/usr/bin/env bash
# The README's test command: build everything once, build the images, then run
# the unit tests and the testcontainers suite against real containers.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -- device       # pass a filter to the test runner
#
# Environment: LAMBDALESS_TEST_EMULATOR_IMAGE (default lambdaless/moto:latest),
# LAMBDALESS_TEST_THREADS (default 2), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh


t0=$(date +%s)

step "dependencies"
scripts/install-deps.sh
# The OpenAPI test runs this schemathesis (installed by install-deps.sh).
export LAMBDALESS_SCHEMATHESIS="$LL_SCHEMATHESIS"

step "format"
cargo fmt --all -- --check

# Lint and build in one compilation (see use_lint_wrapper in lib.sh): a separate
# `cargo clippy` would compile every dependency a second time in check mode (~40% of a cold
# build). The variables stay exported so the test runner's own build step finds all fresh.
have clippy-driver || [[ -x "$(rustc --print sysroot)/bin/clippy-driver" ]] || die "clippy is missing: rustup component add clippy"
use_lint_wrapper
if [[ -x "${CARGO_TARGET_DIR:-target}/release/lambdaless" ]]; then
  step "build + lint (tests and benches on top of up.sh's build: about 2 min)"
else
  step "build + lint (one release build serves binaries, images and tests; cold: about 9 min on 2 cores)"
fi
cargo build --release --locked --workspace --all-targets

step "images"
scripts/images.sh

filter=()
if [ "${1:-}" = "--" ]; then shift; filter=("$@"); fi
threads="${LAMBDALESS_TEST_THREADS:-2}"
step "tests (${threads} at a time)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --locked --workspace --test-threads "$threads" --no-fail-fast "${filter[@]}"
else
  cargo test --release --locked --workspace --no-fail-fast "${filter[@]}" -- --test-threads "$threads"
fi
echo "test.sh: done in $(( $(date +%s) - t0 )) s"
