#!/usr/bin/env bash
# The whole test suite, installing what it needs. Run it as root: the
# network tests build hosts out of network namespaces (shared/lab-rules.md).
# Without root they print "skipped: needs root"; with CI=true they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# iproute2 and nftables for the namespace tests and the datapath; keepalived
# and haproxy are the peers vipd is tested and measured against (`vipd lab
# --stack classic`, `keepalived -t` / `haproxy -c` of the rendered configs);
# curl and bash are what rendered keepalived trackers run.
ensure_packages ca-certificates gcc g++ libc6-dev iproute2 nftables keepalived haproxy procps curl bash
ensure_rust

log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked --quiet -- -D warnings
# A short fuzz run of the VRRP decoders: whatever reaches the socket must
# never panic (fuzz/fuzz_targets). 20 s is some 20 million inputs here.
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
log "cargo fuzz: vrrp_decode for 20 s"
fuzz_log=$(mktemp)
if ! (cd fuzz && cargo fuzz run vrrp_decode --sanitizer none -- -max_total_time=20 >"$fuzz_log" 2>&1); then
  cat "$fuzz_log"; rm -f "$fuzz_log"; exit 1
fi
grep -E '^Done|DONE' "$fuzz_log" | tail -n 1; rm -f "$fuzz_log"

log "cargo test"
cargo test --workspace --locked

