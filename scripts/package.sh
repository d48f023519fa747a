#!/usr/bin/env bash
# Builds the Debian package: a release build, the man pages and shell
# completions generated from the binary (`vipd generate`), then cargo-deb
# with --no-build. Prints the path of the .deb on stdout.
#
#   bash scripts/package.sh            # target/debian/vipd_<version>-1_<arch>.deb
#
# Needs dpkg-dev (dpkg-shlibdeps for the $auto dependencies), binutils
# (objcopy, for the -dbgsym package) and cargo-deb, installed when missing.
# Also writes target/debian/vipd-dbgsym_*.ddeb: the binary's symbols.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages ca-certificates gcc libc6-dev dpkg-dev binutils
ensure_rust
if ! command -v cargo-deb >/dev/null 2>&1; then
  log "installing cargo-deb"
  cargo install cargo-deb --locked --quiet
fi

target_dir=${CARGO_TARGET_DIR:-target}
log "cargo build --release"
cargo build --release --locked -p vipd --quiet

# Where cargo-deb's `target/release/assets/...` paths point (Cargo.toml).
assets="$target_dir/release/assets"
rm -rf "$assets"
vipd="$target_dir/release/vipd"
"$vipd" generate man --out "$assets/man" >/dev/null
gzip -9n "$assets"/man/*.1   # Debian policy 12.1: compressed, reproducibly
for shell in bash zsh fish; do
  "$vipd" generate completions "$shell" --out "$assets/completions" >/dev/null
done

log "cargo deb"
cargo deb -p vipd --no-build --locked --quiet >/dev/null
ls -t "$target_dir"/debian/vipd_*.deb | head -n 1
