#!/usr/bin/env bash
# Make a private CA and a TLS server certificate for the RELIEF SuperLink (Flower 1.42 serves its Fleet, Control
# and Runtime APIs on one HTTPS port, so one server certificate covers all three).
#
#   deploy/certs/make-certs.sh [--out DIR] [--days N] [--force | --reissue-server] SAN [SAN ...]
#   e.g. deploy/certs/make-certs.sh --out ./certs 127.0.0.1 localhost 192.168.1.10 relief-server
#
# Every SAN is an address a SuperNode or the `flwr` CLI dials: IPv4/IPv6 literals become IP SANs, anything else a
# DNS SAN. A client that dials an address missing from the list fails the TLS handshake (see docs/deploy.md).
#
# Writes into DIR (default ./certs, created mode 700):
#   ca.key      (600)  CA private key: keep it OFF the server (operator's machine / offline), it signs server certs
#   ca.crt      (644)  CA certificate: copy to every SuperNode and to the operator (`root-certificates`)
#   server.key  (600)  SuperLink private key   -> --ssl-keyfile
#   server.pem  (644)  SuperLink certificate   -> --ssl-certfile   (ca.crt -> --ssl-ca-certfile)
#
# Idempotent: refuses to overwrite existing files (exit 3) unless
#   --force            new CA and new server certificate (every box then needs the new ca.crt), or
#   --reissue-server   keep ca.key/ca.crt, issue a new server certificate (e.g. to add a SAN).
set -euo pipefail

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "make-certs: error: $1" >&2; exit "${2:-1}"; }

out=./certs
days=825
ca_days=3650
force=0
reissue=0
sans=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) [ $# -ge 2 ] || die "--out needs a folder" 2; out=$2; shift 2 ;;
        --out=*) out=${1#--out=}; shift ;;
        --days) [ $# -ge 2 ] || die "--days needs a number" 2; days=$2; shift 2 ;;
        --force) force=1; shift ;;
        --reissue-server) reissue=1; shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; sans+=("$@"); break ;;
        -*) die "unknown option $1 (see --help)" 2 ;;
        *) sans+=("$1"); shift ;;
    esac
done
[ "${#sans[@]}" -gt 0 ] || { usage >&2; die "give at least one SAN (IP address or DNS name)" 2; }
[ "$force" -eq 1 ] && [ "$reissue" -eq 1 ] && die "--force and --reissue-server exclude each other" 2
case "$days" in '' | *[!0-9]*) die "--days must be a positive integer" 2 ;; esac
command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"

# Classify the SANs.
san_list=""
cn=""
ip=0
dns=0
for s in "${sans[@]}"; do
    if [[ $s =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || [[ $s == *:* ]]; then
        ip=$((ip + 1)); san_list+="${san_list:+,}IP:$s"
    elif [[ $s =~ ^[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]]; then
        dns=$((dns + 1)); san_list+="${san_list:+,}DNS:$s"
        [ -n "$cn" ] || cn=$s
    else
        die "not an IP address or DNS name: '$s'" 2
    fi
done
[ -n "$cn" ] || cn=relief-superlink

umask 077
mkdir -p "$out"
chmod 700 "$out"

existing=()
for f in ca.key ca.crt server.key server.pem; do
    [ -e "$out/$f" ] && existing+=("$out/$f")
done
if [ "$reissue" -eq 1 ]; then
    if [ ! -s "$out/ca.key" ] || [ ! -s "$out/ca.crt" ]; then
        die "--reissue-server needs an existing $out/ca.key and $out/ca.crt"
    fi
elif [ "${#existing[@]}" -gt 0 ] && [ "$force" -eq 0 ]; then
    die "refusing to overwrite ${existing[*]} (use --reissue-server to keep the CA, --force to start over)" 3
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/relief-certs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if [ "$reissue" -eq 0 ]; then
    openssl ecparam -name secp384r1 -genkey -noout -out "$tmp/ca.key" 2>/dev/null
    openssl req -x509 -new -sha384 -key "$tmp/ca.key" -days "$ca_days" -subj "/O=RELIEF/CN=RELIEF testbed CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" \
        -out "$tmp/ca.crt"
else
    cp "$out/ca.key" "$out/ca.crt" "$tmp/"
fi

openssl ecparam -name secp384r1 -genkey -noout -out "$tmp/server.key" 2>/dev/null
openssl req -new -sha384 -key "$tmp/server.key" -subj "/O=RELIEF/CN=$cn" -out "$tmp/server.csr"
cat >"$tmp/server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyAgreement
extendedKeyUsage=serverAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
subjectAltName=$san_list
EXT
openssl x509 -req -sha384 -in "$tmp/server.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -CAcreateserial \
    -days "$days" -extfile "$tmp/server.ext" -out "$tmp/server.pem" 2>/dev/null
openssl verify -CAfile "$tmp/ca.crt" "$tmp/server.pem" >/dev/null || die "the new server certificate does not verify"

for f in ca.key ca.crt server.key server.pem; do
    cp "$tmp/$f" "$out/$f"
done
chmod 600 "$out/ca.key" "$out/server.key"
chmod 644 "$out/ca.crt" "$out/server.pem"

echo "wrote $out/{ca.key,ca.crt,server.key,server.pem} (CN=$cn; $ip IP and $dns DNS SANs)"
openssl x509 -in "$out/server.pem" -noout -ext subjectAltName 2>/dev/null | sed 's/^/  /' || true
echo "SuperLink:  --ssl-ca-certfile ca.crt --ssl-certfile server.pem --ssl-keyfile server.key"
echo "SuperNodes and the operator's flwr CLI need ca.crt only; keep ca.key off the server."
