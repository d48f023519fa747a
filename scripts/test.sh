#!/usr/bin/env bash
# The whole test suite, installing what it needs. Run it as root: the
# network tests build hosts out of network namespaces (shared/lab-rules.md).
# Without root they print "skipped: needs root"; with CI=true they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# iproute2 and nftables for the namespace tests and the datapath; keepalived
# and haproxy are the peers vipd is tested and measured against; wireguard-tools,
# wireguard-go (a userspace interface for `wg setconf`) and bind9-utils
# (named-checkzone) read what `vipd render` writes. systemd for
# `systemd-analyze verify` of the unit; dpkg-dev, binutils and lintian for
# the package; ansible-core and ansible-lint (Debian's) for the role; age
# for the vault's interoperability test (tests/vault.rs); curl and bash are
# what rendered keepalived trackers run (`vipd lab --stack classic`).
ensure_packages ca-certificates gcc g++ libc6-dev iproute2 nftables keepalived haproxy procps \
  wireguard-tools wireguard-go bind9-utils \
  systemd dpkg-dev binutils lintian ansible-core ansible-lint age curl bash
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


# The Debian package: a release build (the cost: some 3 minutes from
# scratch on 2 cores), then what it holds, what it depends on, and lintian.
# scripts/package.sh installs cargo-deb when it is missing.
log "package: scripts/package.sh"
deb=$(bash scripts/package.sh)
contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for path in ./usr/bin/vipd ./usr/lib/systemd/system/vipd.service \
  ./usr/share/man/man1/vipd.1.gz ./usr/share/man/man1/vipd-run.1.gz \
  ./usr/share/man/man1/vipd-config-show.1.gz \
  ./usr/share/bash-completion/completions/vipd ./usr/share/zsh/vendor-completions/_vipd \
  ./usr/share/fish/vendor_completions.d/vipd.fish \
  ./usr/share/doc/vipd/examples/ha.toml ./usr/share/doc/vipd/copyright; do
  grep -qxF "$path" <<<"$contents" || { log "$deb lacks $path"; exit 1; }
done
if grep -q '^\./etc/' <<<"$contents"; then log "$deb installs files in /etc"; exit 1; fi
dpkg-deb -f "$deb" Depends | grep -qw nftables || { log "$deb does not depend on nftables"; exit 1; }
[ -z "$(dpkg-deb -f "$deb" Conffiles)" ] || { log "$deb has conffiles"; exit 1; }
lintian --fail-on error,warning --tag-display-limit 0 "$deb"
control=$(mktemp -d)
dpkg-deb -e "$deb" "$control"
for script in "$control"/postinst "$control"/prerm "$control"/postrm; do sh -n "$script"; done
rm -rf "$control"

log "Ansible role: deploy/ansible/tests/test.sh"
deploy/ansible/tests/test.sh "${CARGO_TARGET_DIR:-target}/debug/vipd"
