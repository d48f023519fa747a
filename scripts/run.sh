#!/usr/bin/env bash
# The main job, until `vipd lab` lands: build vipd, check the example HA
# cluster, and show what one of its VIP holders would run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages ca-certificates gcc libc6-dev
ensure_rust
log "building vipd (release)"
cargo build --release --locked --quiet
log "vipd check -c examples/ha.toml"
./target/release/vipd check -c examples/ha.toml
log "vipd config show -c examples/ha.toml --node lb-a"
./target/release/vipd config show -c examples/ha.toml --node lb-a
