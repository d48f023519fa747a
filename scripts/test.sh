#!/usr/bin/env bash
# The whole test suite, installing what it needs. Run it as root: the
# network tests build hosts out of network namespaces (shared/lab-rules.md).
# Without root they print "skipped: needs root"; with CI=true they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# iproute2 and nftables for the namespace tests and the datapath; keepalived
# and haproxy are the peers vipd is tested and measured against.
ensure_packages ca-certificates gcc libc6-dev iproute2 nftables keepalived haproxy procps
ensure_rust

log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked --quiet -- -D warnings
log "cargo test"
cargo test --workspace --locked
