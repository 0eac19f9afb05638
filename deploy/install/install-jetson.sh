#!/usr/bin/env bash
# Install a RELIEF SuperNode on a Jetson AGX Orin (JetPack 7.2 / L4T r39.2, Ubuntu 24.04, Python 3.12) under systemd.
#
#   sudo deploy/install/install-jetson.sh [--dry-run] [--on-cuda-failure stop|cpu] [--python PY]
#        [--torch-url URL --torch-sha256 HEX | --torch SPEC [--torch-index URL]] [--install-jtop] [--src DIR]
#
#   --dry-run            print what it would do (and the detected JetPack/Python); change nothing; no root needed
#   --on-cuda-failure    stop (default): exit 5 when the CUDA self-test fails;
#                        cpu: carry on CPU-only, with a loud warning (calibrate then with --device cpu)
#   --torch-url/-sha256  the Orin (sm_87) CUDA torch wheel for this Python, pinned by URL and SHA-256
#                        (or set TORCH_WHEEL_URL / TORCH_WHEEL_SHA256 below / in the environment)
#   --torch SPEC         instead: a torch requirement from an index (e.g. the registry's aarch64 CUDA 13 build)
#   --install-jtop       install jetson-stats system-wide (creates group jtop and jtop.service) if missing
#   --tegra-release F    read F instead of /etc/nv_tegra_release (testing)
#
# JetPack 6 (L4T r36, Python 3.10): flwr 1.42 needs Python >= 3.11, so this script prints the container route
# (docs/jetson.md) and exits 4. Exit codes: 2 usage, 3 not a supported Jetson, 4 container route, 5 CUDA test.
set -euo pipefail

# ------------------------------------------------------------------------------------------------ SETTINGS
# Fill these in (or pass --torch-url/--torch-sha256). There are NO defaults on purpose: pick the wheel that matches
# this JetPack and Python (docs/jetson.md, "CUDA torch"), download it once, check it, and keep a mirror; then paste
# its URL and `sha256sum` here. A wheel from the jetson-ai-lab `jp6/cu129` index (cp312) is the reported choice for
# JetPack 7.2; `sbsa/cu130` wheels are for Thor and fail on Orin ("no kernel image").
TORCH_WHEEL_URL=${TORCH_WHEEL_URL:-}          # e.g. https://<mirror>/torch-2.8.0-cp312-cp312-linux_aarch64.whl
TORCH_WHEEL_SHA256=${TORCH_WHEEL_SHA256:-}    # 64 hex digits, from `sha256sum` of the file you checked
# Extra requirements installed with torch (e.g. the CUDA runtime libraries a jetson-ai-lab cu129 wheel expects,
# "nvidia-cuda-runtime-cu12==12.9.* nvidia-cublas-cu12==12.9.* ...", or "numpy<2" for older Jetson wheels).
TORCH_EXTRA_REQUIREMENTS=${TORCH_EXTRA_REQUIREMENTS:-}
# jetson-stats: the client library the ClientApp reads power through (/run/jtop.sock). 7.2.2 covers L4T r39.2.
JTOP_SPEC=${JTOP_SPEC:-jetson-stats==7.2.2}
# ------------------------------------------------------------------------------------------------

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh source-path=SCRIPTDIR
. "$here/common.sh"

src=$(cd "$here/../.." && pwd)
python=python3
on_cuda_failure=stop
torch_spec=""
torch_index=""
install_jtop=0
tegra_release=/etc/nv_tegra_release
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1; shift ;;
        --on-cuda-failure) [ $# -ge 2 ] || die "--on-cuda-failure needs stop|cpu" 2; on_cuda_failure=$2; shift 2 ;;
        --python) [ $# -ge 2 ] || die "--python needs a value" 2; python=$2; shift 2 ;;
        --torch-url) [ $# -ge 2 ] || die "--torch-url needs a value" 2; TORCH_WHEEL_URL=$2; shift 2 ;;
        --torch-sha256) [ $# -ge 2 ] || die "--torch-sha256 needs a value" 2; TORCH_WHEEL_SHA256=$2; shift 2 ;;
        --torch) [ $# -ge 2 ] || die "--torch needs a value" 2; torch_spec=$2; shift 2 ;;
        --torch-index) [ $# -ge 2 ] || die "--torch-index needs a value" 2; torch_index=$2; shift 2 ;;
        --install-jtop) install_jtop=1; shift ;;
        --tegra-release) [ $# -ge 2 ] || die "--tegra-release needs a file" 2; tegra_release=$2; shift 2 ;;
        --src) [ $# -ge 2 ] || die "--src needs a value" 2; src=$2; shift 2 ;;
        -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" 2 ;;
    esac
done
case "$on_cuda_failure" in stop | cpu) ;; *) die "--on-cuda-failure must be stop or cpu" 2 ;; esac
[ -f "$src/pyproject.toml" ] || die "$src is not the RELIEF checkout (no pyproject.toml)" 2

# ------------------------------------------------------------------------------------------------ detect
[ -r "$tegra_release" ] || die "$tegra_release not found: not a Jetson (x86: use install-x86.sh)" 3
# "# R36 (release), REVISION: 4.3, GCID: ..., BOARD: generic, EABI: aarch64, DATE: ..."
l4t_major=$(sed -n 's/^# R\([0-9]*\) (release), REVISION: \([0-9.]*\).*/\1/p' "$tegra_release")
l4t_rev=$(sed -n 's/^# R\([0-9]*\) (release), REVISION: \([0-9.]*\).*/\2/p' "$tegra_release")
[ -n "$l4t_major" ] || die "cannot parse $tegra_release: $(head -1 "$tegra_release")" 3
case "$l4t_major" in
    36) jetpack="6.x" ;;
    38) jetpack="7.0/7.1" ;;
    39) jetpack="7.2" ;;
    *) jetpack="unknown" ;;
esac
model=$( { tr -d '\0' </proc/device-tree/model; } 2>/dev/null || echo unknown)
pyver=$(python_version "$python")
say "L4T r$l4t_major.$l4t_rev (JetPack $jetpack), model: $model, $python = Python ${pyver:-none}"
[ "$l4t_major" = 38 ] && die "JetPack 7.0/7.1 (L4T r38) does not support Orin; flash JetPack 7.2 (docs/jetson.md)" 3
[ "$jetpack" = unknown ] && warn "L4T r$l4t_major is not one this script knows (36, 39): check docs/jetson.md"
case "$model" in *Orin*) ;; *) warn "model '$model' is not an Orin: the torch wheel and profiles assume sm_87" ;; esac

if ! python_ok "$pyver"; then
    cat >&2 <<MSG

==========================================================================================================
 Python ${pyver:-?} here; RELIEF's flwr 1.42 needs Python >= 3.11 (flwr 1.30 was the last for 3.10, and a 1.30
 SuperNode cannot talk to a 1.42 SuperLink). On JetPack 6 run the SuperNode in a container instead:

   docker run --rm --runtime nvidia --network host \\
     -v /etc/relief:/etc/relief:ro -v /var/lib/relief:/var/lib/relief \\
     -v /run/jtop.sock:/run/jtop.sock --group-add \$(getent group jtop | cut -d: -f3) \\
     -e FLWR_TELEMETRY_ENABLED=0 -e FLWR_DISABLE_UPDATE_CHECK=1 -e FLWR_HOME=/var/lib/relief/flwr \\
     -e RELIEF_CACHE_DIR=/var/lib/relief/cache -e FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 \\
     relief-supernode:jp6  flower-supernode --superlink HOST:9092 --root-certificates /etc/relief/certs/ca.crt \\
       --auth-supernode-private-key /etc/relief/keys/supernode --node-config /etc/relief/node.toml

 where relief-supernode:jp6 is built FROM a Python 3.12 + sm_87 torch image (e.g. dustynv/pytorch:2.6-r36.4.0-
 cu128-24.04) with flwr==1.42.0 and RELIEF installed: see docs/jetson.md, "JetPack 6: the container variant".
 Or flash JetPack 7.2 (Python 3.12) and rerun this script.
==========================================================================================================
MSG
    exit 4
fi

need_root
[ "$DRY_RUN" -eq 1 ] && say "dry run: nothing is changed"

# ------------------------------------------------------------------------------------------------ install
create_user
make_dirs
make_venv "$python"

pip=("$VENV/bin/python" -m pip)
if [ -n "$TORCH_WHEEL_URL" ] || [ -n "$TORCH_WHEEL_SHA256" ]; then
    [[ $TORCH_WHEEL_SHA256 =~ ^[0-9a-fA-F]{64}$ ]] || die "TORCH_WHEEL_SHA256 must be 64 hex digits (sha256sum of the wheel)" 2
    [ -n "$TORCH_WHEEL_URL" ] || die "TORCH_WHEEL_SHA256 is set but TORCH_WHEEL_URL is empty" 2
    wheel_name=$(basename "${TORCH_WHEEL_URL%%\?*}")
    case "$wheel_name" in torch-*"cp${pyver/./}"*.whl) ;; *) die "$wheel_name is not a torch wheel for cp${pyver/./}" 2 ;; esac
    dl=$(mktemp -d "${TMPDIR:-/tmp}/relief-torch.XXXXXX")
    say "torch first: $wheel_name (sha256 $TORCH_WHEEL_SHA256)"
    run curl -fL --retry 3 -o "$dl/$wheel_name" "$TORCH_WHEEL_URL"
    if [ "$DRY_RUN" -eq 0 ]; then
        echo "$TORCH_WHEEL_SHA256  $dl/$wheel_name" | sha256sum -c - || die "torch wheel checksum mismatch" 1
    else
        run sha256sum -c "<<< $TORCH_WHEEL_SHA256  $dl/$wheel_name"
    fi
    # shellcheck disable=SC2086  # TORCH_EXTRA_REQUIREMENTS is a list of requirements
    run "${pip[@]}" install --only-binary=:all: "$dl/$wheel_name" $TORCH_EXTRA_REQUIREMENTS
    rm -rf "$dl"
elif [ -n "$torch_spec" ]; then
    say "torch first: $torch_spec ${torch_index:+from $torch_index}"
    # shellcheck disable=SC2086
    run "${pip[@]}" install --only-binary=:all: ${torch_index:+--index-url "$torch_index"} "$torch_spec" \
        $TORCH_EXTRA_REQUIREMENTS
else
    die "no torch chosen: fill TORCH_WHEEL_URL and TORCH_WHEEL_SHA256 at the top of $0 (or pass --torch-url and
       --torch-sha256, or --torch SPEC). See docs/jetson.md, \"CUDA torch on Orin\"." 2
fi
pin_torch

# ------------------------------------------------------------------------------------------------ CUDA self-test
cuda_test='
import sys, torch
print("torch", torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available())
if not torch.cuda.is_available():
    sys.exit("torch.cuda.is_available() is False")
dev = torch.device("cuda")
print("device", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))
torch.manual_seed(0)
a = torch.randn(256, 256, requires_grad=True)
b = torch.randn(256, 256)
conv = torch.nn.Conv1d(19, 32, kernel_size=5)
x = torch.randn(8, 19, 128)
ref = (a @ b).pow(2).mean() + conv(x).relu().mean()
ga = a.cuda().detach().requires_grad_(True)
gconv = torch.nn.Conv1d(19, 32, kernel_size=5).cuda()
gconv.load_state_dict(conv.state_dict())
out = (ga @ b.cuda()).pow(2).mean() + gconv(x.cuda()).relu().mean()
out.backward()
torch.cuda.synchronize()
assert ga.grad is not None and bool(torch.isfinite(ga.grad).all()), "no finite gradient on cuda"
assert gconv.weight.grad is not None and bool(torch.isfinite(gconv.weight.grad).all()), "conv1d backward failed"
assert abs(out.item() - ref.item()) <= 1e-3 * max(1.0, abs(ref.item())), f"cuda {out.item()} != cpu {ref.item()}"
print("CUDA self-test passed: matmul, conv1d and backward on", torch.cuda.get_device_name(0))
'
cuda_self_test() {
    if [ "$DRY_RUN" -eq 1 ]; then
        run timeout 600 "$VENV/bin/python" -c "<CUDA self-test: is_available, matmul, conv1d, backward>"
        return 0
    fi
    timeout 600 "$VENV/bin/python" -c "$cuda_test"
}
cuda_ok=1
cuda_self_test || cuda_ok=0
if [ "$cuda_ok" -eq 0 ]; then
    if [ "$on_cuda_failure" = stop ]; then
        die "the CUDA self-test failed (above): wrong torch wheel for this JetPack/Python? See docs/jetson.md.
       Rerun with --on-cuda-failure cpu to install a CPU-only SuperNode anyway." 5
    fi
    cat >&2 <<MSG
##########################################################################################################
##  WARNING: CUDA SELF-TEST FAILED. This SuperNode will train on the CPU (many times slower than the GPU). ##
##  Calibrate it with --device cpu and point device-profile at that profile, or results will be wrong.    ##
##########################################################################################################
MSG
    echo "CUDA self-test failed at install on $(date -Is); training runs on the CPU" |
        write_file "$ETC/CUDA-SELFTEST-FAILED" 0644 root:root
fi

# ------------------------------------------------------------------------------------------------ project
say "the project, binary wheels only, torch pinned by $PREFIX/constraints.txt"
install_project "$src"
# The jtop client (pure Python, source only): build the wheel as the unprivileged user so that no root-only
# install hook of jetson-stats runs, then install it into the venv without dependencies.
jw=$(mktemp -d "${TMPDIR:-/tmp}/relief-jtop.XXXXXX")
run chmod 0777 "$jw"
run runuser -u "$RELIEF_USER" -- env HOME="$jw" "${pip[@]}" wheel --quiet --no-deps --wheel-dir "$jw" "$JTOP_SPEC"
if [ "$DRY_RUN" -eq 1 ]; then
    run "${pip[@]}" install --no-deps --constraint "$PREFIX/constraints.txt" "$jw/jetson_stats-<version>.whl"
else
    run "${pip[@]}" install --no-deps --constraint "$PREFIX/constraints.txt" "$jw"/jetson_stats-*.whl
fi
rm -rf "$jw"
if [ "$cuda_ok" -eq 1 ]; then
    say "CUDA self-test again, after the project install (torch must be untouched)"
    cuda_self_test || die "the CUDA self-test passed before the project install and fails after it" 5
fi

# ------------------------------------------------------------------------------------------------ jtop, groups
if ! getent group jtop >/dev/null 2>&1; then
    if [ "$install_jtop" -eq 1 ]; then
        run pip3 install --break-system-packages -U "$JTOP_SPEC"
        run systemctl enable --now jtop.service
    else
        warn "group jtop missing: jetson-stats is not installed system-wide (rerun with --install-jtop, or
         sudo pip3 install --break-system-packages -U $JTOP_SPEC). The ClientApp falls back to the INA3221
         hwmon files or tegrastats for power."
    fi
fi
for g in jtop video render; do
    if getent group "$g" >/dev/null 2>&1 || { [ "$DRY_RUN" -eq 1 ] && [ "$g" != render ]; }; then
        run usermod -aG "$g" "$RELIEF_USER"
    fi
done

# ------------------------------------------------------------------------------------------------ config, unit
seed_devices "$src"
install_config "$src" relief.env 0640
install_config "$src" node.toml 0640
install_unit "$src" relief-supernode.service
if ! getent group jtop >/dev/null 2>&1 && [ "$DRY_RUN" -eq 0 ]; then
    run install -d -m 0755 "$UNIT_DIR/relief-supernode.service.d"
    write_file "$UNIT_DIR/relief-supernode.service.d/10-no-jtop.conf" 0644 root:root <<'CONF'
[Service]
SupplementaryGroups=
SupplementaryGroups=video
CONF
fi
run systemctl daemon-reload
run systemctl enable relief-supernode.service

cat <<NEXT

Installed (CUDA: $([ "$cuda_ok" -eq 1 ] && echo ok || echo 'FAILED, CPU only')). Before starting (docs/deploy.md):
  - $ETC/certs/ca.crt (0644) and the node key $ETC/keys/supernode (root:$RELIEF_USER 0640), its .pub registered
    by the operator (flwr supernode register);
  - edit $ETC/relief.env (RELIEF_SUPERLINK=host:port) and $ETC/node.toml (partition-id, device-profile);
  - calibrate:  sudo -u $RELIEF_USER env RELIEF_DEVICES_DIR=$STATE/devices $VENV/bin/relief calibrate --name NAME
  - then: systemctl start relief-supernode   (journalctl -u relief-supernode -f)
NEXT
