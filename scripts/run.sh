#!/usr/bin/env bash
# The main job: build vipd, then `vipd lab --mesh wireguard --stack both`: a
# whole HA cluster in network namespaces on this machine (2 VIP holders, 3
# planes, 1 worker) on a WireGuard mesh, as our users run it (wireguard-go
# on wg99 in every node, the VIP on wg99), every failure drill under load,
# for vipd and for keepalived + HAProxy (with the seed's static AllowedIPs)
# side by side, the report, and the lab removed again. Needs root for the
# namespaces (it uses sudo when not root). Arguments replace the default
# ones of `vipd lab` (e.g. `--stack vipd`, no `--mesh` for the cluster on
# the bridge alone, `--scenario master-kill`, `--json`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages ca-certificates gcc libc6-dev iproute2 nftables keepalived haproxy procps \
  wireguard-go wireguard-tools util-linux
ensure_rust
log "building vipd (release)"
cargo build --release --locked --quiet
log "vipd check -c examples/lab.toml"
./target/release/vipd check -c examples/lab.toml
if [ $# -eq 0 ]; then
  set -- --mesh wireguard --stack both
fi
log "vipd lab $*"
as_root ./target/release/vipd lab "$@"
