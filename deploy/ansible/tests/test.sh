#!/usr/bin/env bash
# The Ansible role's tests, without a remote host and without touching the
# machine: ansible-lint, --syntax-check, the cluster-file template on awkward
# values (parsed back with Python's tomllib), and the example playbook run
# for real with a local connection into a temporary directory (package and
# service management off; the WireGuard file goes there too), every cluster
# file it writes checked by `vipd check` (the role's validate).
# scripts/test.sh runs it.
#
#   deploy/ansible/tests/test.sh [PATH-TO-VIPD]     (default: target/debug/vipd)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
vipd=$(realpath "${1:-$here/../../target/debug/vipd}")
python=/usr/bin/python3   # Debian's, which ansible uses: it has tomllib (3.11)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false
export ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=false
cd "$here"

say() { printf '  %s\n' "$*" >&2; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

say "ansible-lint (production profile)"
ansible-lint --nocolor --profile production >"$work/lint" 2>&1 || { cat "$work/lint"; fail ansible-lint; }

say "ansible-playbook --syntax-check"
ansible-playbook --syntax-check -i hosts_bay.ini vipd_manage.yaml >/dev/null
ansible-playbook --syntax-check -i localhost, tests/toml_round_trip.yml >/dev/null

say "the cluster-file template on awkward values, parsed back"
ansible-playbook -i localhost, tests/toml_round_trip.yml \
  -e "out=$work/round-trip.toml" -e ansible_python_interpreter=$python >"$work/log" 2>&1 \
  || { cat "$work/log"; fail "rendering the round-trip template"; }
"$python" - "$work/round-trip.toml" tests/toml_round_trip.expected.json <<'EOF'
import json, sys, tomllib
with open(sys.argv[1], "rb") as f:
    got = tomllib.load(f)
with open(sys.argv[2]) as f:
    expected = json.load(f)
if got != expected:
    sys.exit("the template wrote\n%s\nexpected\n%s" % (
        json.dumps(got, indent=1, ensure_ascii=False), json.dumps(expected, indent=1, ensure_ascii=False)))
EOF

# run_role HOST DIR [EXTRA-ARGS...]: the example playbook for one inventory
# host, writing under DIR. Prints ansible's output.
run_role() {
  local host=$1 dir=$2; shift 2
  ansible-playbook vipd_manage.yaml -c local --limit "$host" -e "$(cat <<EOF
{"vipd_config_dir": "$dir/etc/vipd", "vipd_default_file": "$dir/default/vipd",
 "vipd_manage_package": false, "vipd_manage_service": false,
 "vipd_wireguard_dir": "$dir/wireguard",
 "vipd_user": "$(id -un)", "vipd_group": "$(id -gn)", "vipd_binary": "$vipd",
 "ansible_become": false, "ansible_python_interpreter": "$python"}
EOF
)" "$@"
}
mode() { stat -c %a "$1"; }

for host_node in 198.18.20.5=haproxy-spb 198.18.10.12=bay-plane2 198.18.30.21=bay-worker1; do
  host=${host_node%=*} node=${host_node#*=} dir=$work/$node
  mkdir -p "$dir/default"
  say "the example playbook on $host ($node): writes, checks, then changes nothing"
  # --diff -v: whatever ansible would show; no secret may be in it.
  run_role "$host" "$dir" --diff -v >"$work/log" 2>&1 || { cat "$work/log"; fail "the role on $host"; }
  [ "$(mode "$dir/etc/vipd/secrets.toml")" = 600 ] || fail "secrets.toml is not 0600"
  [ "$(mode "$dir/etc/vipd/cluster.toml")" = 640 ] || fail "cluster.toml is not 0640"
  [ "$(mode "$dir/etc/vipd")" = 750 ] || fail "the config dir is not 0750"
  grep -qx "VIPD_NODE=\"$node\"" "$dir/default/vipd" || fail "VIPD_NODE is not $node: $(cat "$dir/default/vipd")"
  # The node the unit will run resolves in the file the role wrote.
  "$vipd" config show -c "$dir/etc/vipd/cluster.toml" --node "$node" >/dev/null \
    || fail "vipd config show --node $node"
  # The WireGuard file: 0600, and what vipd renders for the node, with its key.
  wgfile=$dir/wireguard/wg99.conf
  [ -f "$wgfile" ] || fail "no WireGuard file $wgfile"
  [ "$(mode "$wgfile")" = 600 ] || fail "$wgfile is not 0600"
  [ "$(mode "$dir/wireguard")" = 700 ] || fail "the WireGuard dir is not 0700"
  grep -Eq '^PrivateKey = [A-Za-z0-9+/]{43}=$' "$wgfile" || fail "no private key in $wgfile"
  "$vipd" render wireguard -c "$dir/etc/vipd/cluster.toml" --node "$node" --show-secrets >"$work/wg.expected" \
    || fail "vipd render wireguard --node $node"
  cmp -s "$wgfile" "$work/wg.expected" || fail "$wgfile is not what vipd render wireguard prints"
  [ ! -e "$wgfile.vipd-new" ] || fail "a staging file was left in $dir/wireguard"
  # No secret value (the example's private keys, its VRRP password) in ansible's output.
  for secret in $(grep -Eo '(private_key|vault_keepalived_auth_pass|password): *"[^"]+"' group_vars/all/vault_secrets.yml | sed 's/.*: *"//; s/"$//'); do
    if grep -qF -- "$secret" "$work/log"; then fail "a secret value appears in ansible's output"; fi
  done
  run_role "$host" "$dir" >"$work/log" 2>&1 || { cat "$work/log"; fail "second run on $host"; }
  grep -Eq "ok=[0-9]+ +changed=0 " "$work/log" || { cat "$work/log"; fail "the second run changed something"; }
done

say "a new cluster file rewrites the WireGuard file (and notifies its sync)"
dir=$work/haproxy-spb
run_role 198.18.20.5 "$dir" -e vault_wg_listen_port=51999 >"$work/log" 2>&1 || { cat "$work/log"; fail "the role with a new port"; }
grep -qx 'ListenPort = 51999' "$dir/wireguard/wg99.conf" || fail "the WireGuard file kept the old port"
grep -q 'changed: \[198.18.20.5\]' <(grep -A1 'Write the WireGuard interface file' "$work/log") \
  || { cat "$work/log"; fail "the WireGuard file task did not report a change"; }
grep -q 'RUNNING HANDLER \[vipd : Sync the WireGuard interface\]' "$work/log" \
  || { cat "$work/log"; fail "the sync handler was not notified"; }
run_role 198.18.20.5 "$dir" >"$work/log" 2>&1 || { cat "$work/log"; fail "the role back on the old port"; }

say "without [mesh]: no WireGuard file"
dir=$work/lan
mkdir -p "$dir/default"
run_role 198.18.20.5 "$dir" -e '{"vipd_cluster": {"cluster": {"name": "lan"}, "vip": {"address": "198.18.20.100", "interface": "eth0", "vrid": 7}, "plane": {"health": {"kind": "tcp"}}, "nodes": [{"name": "haproxy-spb", "roles": ["vip"], "address": "198.18.20.5", "host": "198.18.20.5", "priority": 150}, {"name": "p1", "roles": ["plane"], "address": "198.18.20.11"}]}}' \
  >"$work/log" 2>&1 || { cat "$work/log"; fail "the role on a LAN cluster"; }
[ -f "$dir/etc/vipd/cluster.toml" ] || fail "the LAN cluster file was not written"
[ ! -e "$dir/wireguard" ] || fail "a WireGuard directory was made for a cluster without [mesh]"

say "a cluster file vipd check refuses is not installed; the old one stays"
dir=$work/haproxy-spb
before=$(sha256sum <"$dir/etc/vipd/cluster.toml")
if run_role 198.18.20.5 "$dir" -e '{"vipd_cluster": {"cluster": {"name": "bay"}, "vip": {"address": "198.19.0.100", "interface": "wg99", "vrid": 51}, "nodes": [{"name": "haproxy-spb", "roles": ["vip"], "address": "198.19.0.1", "host": "198.18.20.5", "priority": 300}]}}' \
  >"$work/log" 2>&1; then
  cat "$work/log"; fail "the role installed a cluster file with priority 300"
fi
grep -q 'failed to validate' "$work/log" || { cat "$work/log"; fail "no validate failure"; }
grep -q 'nodes\[0\].priority' "$work/log" || { cat "$work/log"; fail "vipd check's finding is not shown"; }
[ "$(sha256sum <"$dir/etc/vipd/cluster.toml")" = "$before" ] || fail "the old cluster file changed"

say "check mode writes nothing"
dir=$work/check-mode
mkdir -p "$dir/default"
run_role 198.18.20.6 "$dir" --check >"$work/log" 2>&1 || { cat "$work/log"; fail "check mode"; }
[ ! -e "$dir/etc/vipd" ] || fail "check mode created $dir/etc/vipd"
say "ok"
