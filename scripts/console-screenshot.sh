#!/usr/bin/env bash
# Makes docs/console.png, the README's picture of the console: runs the console's browser
# test (tests/it/console.rs) against fresh containers; headless Chromium saves the page with
# the live data the test produced.
#
#   scripts/console-screenshot.sh [path.png]     # default docs/console.png
#
# Needs the images (scripts/images.sh, with the same LAMBDALESS_IMAGE_TAG) and Chromium
# (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

out="$(realpath -m "${1:-docs/console.png}")"
scripts/install-deps.sh
use_lint_wrapper
step "console screenshot → ${out}"
LL_CONSOLE_SCREENSHOT="$out" cargo test --release --locked -p lambdaless-tests --test it -- \
  --exact console::the_console_drives_every_pattern_in_a_real_browser_without_leaving_its_origin --nocapture
[[ -s "$out" ]] || die "no screenshot written"
ok "wrote ${out}"
