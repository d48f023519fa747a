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
# Short fuzz runs of every parser that reads what others wrote
# (fuzz/fuzz_targets): VRRP packets, ctnetlink messages, the Ansible
# inventory, variables and vault files, the cluster file, the control
# socket's answers. Whatever the input: no panic, no hang (-timeout), no
# runaway memory (-rss_limit_mb). Each starts from its seeds (fuzz/seeds/,
# the repository's fixtures) and runs 10 s; the build takes the longest
# (16 codegen units: a faster build for somewhat slower runs).
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
fuzz_seeds() {
  case "$1" in
    ansible_vars) echo seeds/ansible_vars ../crates/vipd/tests/fixtures/seed-ansible/group_vars ;;
    cluster_check) echo ../examples ../crates/vipd/tests/fixtures/check ;;
    vrrp_decode) ;;
    *) echo "seeds/$1" ;;
  esac
}
fuzz_log=$(mktemp)
log "cargo fuzz: build"
if ! (cd fuzz && cargo fuzz build --sanitizer none --codegen-units 16 >"$fuzz_log" 2>&1); then
  cat "$fuzz_log"; rm -f "$fuzz_log"; exit 1
fi
for target in vrrp_decode conntrack_parse control_response inventory ansible_vars ansible_vault cluster_check; do
  log "cargo fuzz: $target for 10 s"
  mkdir -p "fuzz/corpus/$target"
  # shellcheck disable=SC2046 # the seed directories are one word each
  if ! (cd fuzz && cargo fuzz run "$target" --sanitizer none --codegen-units 16 \
    "corpus/$target" $(fuzz_seeds "$target") \
    -- -max_total_time=10 -timeout=5 -rss_limit_mb=2048 >"$fuzz_log" 2>&1); then
    cat "$fuzz_log"; rm -f "$fuzz_log"; exit 1
  fi
  echo "$target: $(grep -E 'DONE' "$fuzz_log" | tail -n 1)"
done
rm -f "$fuzz_log"

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
