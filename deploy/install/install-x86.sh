#!/usr/bin/env bash
# Install RELIEF on an x86-64 Linux host (the testbed's SuperLink server; optionally a CPU SuperNode) under systemd.
#
#   sudo deploy/install/install-x86.sh [--dry-run] [--role superlink|supernode|both] [--python PY]
#                                      [--torch SPEC] [--torch-index URL] [--src DIR]
#
#   --dry-run        print every command (and file) it would run (write) and change nothing; no root needed
#   --role           superlink (default), supernode, or both
#   --python PY      interpreter for the venv (default: python3.12, python3.11 or python3, must be >= 3.11)
#   --torch SPEC     torch requirement installed first (default torch==2.13.0, the version the project tests with)
#   --torch-index    index for it (default https://download.pytorch.org/whl/cpu: the CPU build, no CUDA download)
#   --src DIR        the RELIEF checkout (default: this script's repository)
#
# What it does: creates the system user `relief`; /opt/relief/venv (root-owned, readable by relief) with the
# pinned torch first, then the project wheel and its dependencies as binary wheels only, under a constraint that
# pins torch (nothing may replace it); /etc/relief (config, certs, keys; root:relief 0750) and /var/lib/relief
# (state; relief 0750); installs the units and enables them. It does not start them: the certificates and (for a
# SuperNode) the node key and node.toml must be in place first (docs/deploy.md).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh source-path=SCRIPTDIR
. "$here/common.sh"

src=$(cd "$here/../.." && pwd)
role=superlink
python=""
torch_spec=torch==2.13.0
torch_index=https://download.pytorch.org/whl/cpu
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1; shift ;;
        --role) [ $# -ge 2 ] || die "--role needs a value" 2; role=$2; shift 2 ;;
        --python) [ $# -ge 2 ] || die "--python needs a value" 2; python=$2; shift 2 ;;
        --torch) [ $# -ge 2 ] || die "--torch needs a value" 2; torch_spec=$2; shift 2 ;;
        --torch-index) [ $# -ge 2 ] || die "--torch-index needs a value" 2; torch_index=$2; shift 2 ;;
        --src) [ $# -ge 2 ] || die "--src needs a value" 2; src=$2; shift 2 ;;
        -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" 2 ;;
    esac
done
case "$role" in superlink | supernode | both) ;; *) die "--role must be superlink, supernode or both" 2 ;; esac
[ -f "$src/pyproject.toml" ] || die "$src is not the RELIEF checkout (no pyproject.toml)"
[ "$(uname -m)" = x86_64 ] || warn "this is $(uname -m), not x86_64 (Jetson: use install-jetson.sh)"
need_root
[ "$DRY_RUN" -eq 1 ] && say "dry run: nothing is changed"

if [ -z "$python" ]; then
    for candidate in python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null && python_ok "$(python_version "$candidate")"; then
            python=$candidate
            break
        fi
    done
fi
[ -n "$python" ] || die "no Python >= 3.11 found (flwr 1.42 needs it): install python3.12 (and python3.12-venv)"
pyver=$(python_version "$python")
python_ok "$pyver" || die "$python is Python ${pyver:-?}; flwr 1.42 needs >= 3.11"
say "Python $pyver ($python), role $role, source $src"

create_user
make_dirs
make_venv "$python"
say "torch first: $torch_spec from $torch_index"
run "$VENV/bin/python" -m pip install --only-binary=:all: --index-url "$torch_index" "$torch_spec"
pin_torch
say "the project, binary wheels only, torch pinned"
install_project "$src"
run "$VENV/bin/python" -c 'import torch, flwr, relief_client, relief_server; print("torch", torch.__version__, "flwr", flwr.__version__)'

seed_devices "$src"
install_config "$src" relief.env 0640
if [ "$role" != superlink ]; then
    install_config "$src" node.toml 0640
fi

if [ "$role" != supernode ]; then
    install_unit "$src" relief-superlink.service
fi
if [ "$role" != superlink ]; then
    install_unit "$src" relief-supernode.service
    # No jtop on x86: drop the Jetson groups (a missing group would stop the unit from starting).
    run install -d -m 0755 "$UNIT_DIR/relief-supernode.service.d"
    write_file "$UNIT_DIR/relief-supernode.service.d/10-x86.conf" 0644 root:root <<'CONF'
[Service]
SupplementaryGroups=
CONF
fi
run systemctl daemon-reload
if [ "$role" != supernode ]; then run systemctl enable relief-superlink.service; fi
if [ "$role" != superlink ]; then run systemctl enable relief-supernode.service; fi

cat <<NEXT

Installed. Before starting (docs/deploy.md):
  - certificates: $ETC/certs/ca.crt (0644), server.pem (0644), server.key (root:$RELIEF_USER 0640)
    from deploy/certs/make-certs.sh, with SANs for every address the boxes dial and 127.0.0.1;
  - edit $ETC/relief.env (host, port); SuperNode: $ETC/keys/supernode (root:$RELIEF_USER 0640) and $ETC/node.toml;
  - firewall the SuperLink port: its Control API has no authentication;
  - then: systemctl start relief-superlink   (journalctl -u relief-superlink -f)
NEXT
