#!/usr/bin/env bash
# Shared helpers for deploy/install/install-*.sh (sourced, not run).
# shellcheck disable=SC2034  # variables are used by the sourcing scripts

RELIEF_USER=${RELIEF_USER:-relief}
PREFIX=${PREFIX:-/opt/relief}
VENV=${VENV:-$PREFIX/venv}
ETC=${ETC:-/etc/relief}
STATE=${STATE:-/var/lib/relief}
UNIT_DIR=${UNIT_DIR:-/etc/systemd/system}
DRY_RUN=${DRY_RUN:-0}

say() { printf '==> %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$1" >&2; exit "${2:-1}"; }

# Run a command, or only print it under --dry-run.
run() {
    if [ "$DRY_RUN" -eq 1 ]; then
        printf '+'; printf ' %q' "$@"; printf '\n'
    else
        "$@"
    fi
}

# Write stdin to a file (mode, owner:group), or show what would be written under --dry-run.
write_file() {
    local path=$1 mode=$2 owner=$3 content
    content=$(cat)
    if [ "$DRY_RUN" -eq 1 ]; then
        printf '+ write %s (mode %s, %s):\n' "$path" "$mode" "$owner"
        printf '%s\n' "$content" | sed 's/^/    | /'
    else
        printf '%s\n' "$content" >"$path"
        chmod "$mode" "$path"
        chown "$owner" "$path"
    fi
}

need_root() {
    if [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
        die "run as root (sudo $0 ...), or with --dry-run to see what it would do"
    fi
}

# Echo "major.minor" of a Python interpreter, or nothing.
python_version() {
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

python_ok() {  # python_ok 3.12 -> true when >= 3.11
    local major=${1%%.*} minor=${1#*.}
    [ -n "$1" ] && { [ "$major" -gt 3 ] || { [ "$major" -eq 3 ] && [ "$minor" -ge 11 ]; }; }
}

create_user() {
    if getent passwd "$RELIEF_USER" >/dev/null 2>&1; then
        say "user $RELIEF_USER exists"
    else
        run useradd --system --user-group --home-dir "$STATE" --no-create-home \
            --shell /usr/sbin/nologin --comment "RELIEF Flower services" "$RELIEF_USER"
    fi
}

make_dirs() {
    run install -d -m 0755 -o root -g root "$PREFIX"
    run install -d -m 0750 -o root -g "$RELIEF_USER" "$ETC" "$ETC/certs" "$ETC/keys"
    run install -d -m 0750 -o "$RELIEF_USER" -g "$RELIEF_USER" "$STATE" "$STATE/flwr" "$STATE/cache" \
        "$STATE/runs" "$STATE/devices"
}

make_venv() {  # make_venv PYTHON
    if [ -x "$VENV/bin/python" ]; then
        say "venv $VENV exists (remove it to start over)"
    else
        run "$1" -m venv "$VENV"
    fi
    run "$VENV/bin/python" -m pip install --quiet --upgrade pip
}

# Pin the torch that is installed now, so that no later install can replace it (pip fails instead).
pin_torch() {
    local version
    if [ "$DRY_RUN" -eq 1 ]; then
        version="<installed torch version>"
    else
        version=$("$VENV/bin/python" -c 'import torch; print(torch.__version__)') || die "torch does not import"
    fi
    printf 'torch==%s\n' "$version" | write_file "$PREFIX/constraints.txt" 0644 root:root
}

# Build the project's wheel and install it (and its dependencies as binary wheels only) under the torch pin.
install_project() {  # install_project SRC [pip args...]
    local src=$1 wheels
    shift
    wheels=$(mktemp -d "${TMPDIR:-/tmp}/relief-wheel.XXXXXX")
    run "$VENV/bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$wheels" "$src"
    if [ "$DRY_RUN" -eq 1 ]; then
        run "$VENV/bin/python" -m pip install --only-binary=:all: --constraint "$PREFIX/constraints.txt" "$@" \
            "$wheels/relief-<version>-py3-none-any.whl"
    else
        run "$VENV/bin/python" -m pip install --only-binary=:all: --constraint "$PREFIX/constraints.txt" "$@" \
            "$wheels"/relief-*.whl
    fi
    rm -rf "$wheels"
    run "$VENV/bin/python" -m pip check
}

install_config() {  # install_config SRC FILE MODE  (never overwrites the site's copy)
    local src=$1 name=$2 mode=$3
    if [ -e "$ETC/$name" ]; then
        say "$ETC/$name exists, left as is (example: $src/deploy/config/$name)"
    else
        run install -m "$mode" -o root -g "$RELIEF_USER" "$src/deploy/config/$name" "$ETC/$name"
    fi
}

install_unit() {  # install_unit SRC NAME
    run install -m 0644 -o root -g root "$1/deploy/systemd/$2" "$UNIT_DIR/$2"
}

# The project wheel carries code only: copy the stock device profiles to a folder the relief user may write, where
# `RELIEF_DEVICES_DIR=$STATE/devices relief calibrate --name NAME` finds its base profile and writes NAME.yaml.
seed_devices() {  # seed_devices SRC
    local f
    for f in "$1"/configs/devices/*.yaml; do
        [ -e "$STATE/devices/$(basename "$f")" ] && continue
        run install -m 0644 -o "$RELIEF_USER" -g "$RELIEF_USER" "$f" "$STATE/devices/"
    done
}
