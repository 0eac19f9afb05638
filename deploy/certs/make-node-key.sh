#!/usr/bin/env bash
# Make the ECDSA P-384 key pair a SuperNode authenticates with (SuperLink started with --enable-supernode-auth).
#
#   deploy/certs/make-node-key.sh [--out DIR] [--force] NAME      e.g.  make-node-key.sh --out ./keys orin-01
#
# Writes DIR/NAME (private key, OpenSSH format, mode 600; stays on the box: --auth-supernode-private-key) and
# DIR/NAME.pub (public key, mode 644; the operator registers it: `flwr supernode register NAME.pub <connection>`).
# Flower accepts NIST EC curves only (ed25519 and RSA keys are rejected). Refuses to overwrite unless --force.
set -euo pipefail

die() { echo "make-node-key: error: $1" >&2; exit "${2:-1}"; }
usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; }

out=./keys
force=0
name=""
while [ $# -gt 0 ]; do
    case "$1" in
        --out) [ $# -ge 2 ] || die "--out needs a folder" 2; out=$2; shift 2 ;;
        --out=*) out=${1#--out=}; shift ;;
        --force) force=1; shift ;;
        -h | --help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" 2 ;;
        *) [ -z "$name" ] || die "one NAME only" 2; name=$1; shift ;;
    esac
done
[ -n "$name" ] || { usage >&2; die "give the node's NAME (e.g. orin-01)" 2; }
[[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "NAME may hold letters, digits, '.', '_' and '-' only: '$name'" 2
command -v ssh-keygen >/dev/null || die "ssh-keygen not found (apt-get install openssh-client)"

umask 077
mkdir -p "$out"
key="$out/$name"
if [ -e "$key" ] || [ -e "$key.pub" ]; then
    [ "$force" -eq 1 ] || die "refusing to overwrite $key (use --force; the new key must then be registered again)" 3
    rm -f "$key" "$key.pub"
fi
ssh-keygen -q -t ecdsa -b 384 -N "" -C "relief-$name" -f "$key"
chmod 600 "$key"
chmod 644 "$key.pub"
echo "wrote $key (private, keep on the node) and $key.pub (register it)"
ssh-keygen -l -f "$key.pub"
