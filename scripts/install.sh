#!/usr/bin/env bash
# Idempotent installer: creates ./.venv with torch, torchvision, Detectron2 and this package.
#
#   bash scripts/install.sh                # uses $PYTHON (default python3) and ./.venv
#   bash scripts/install.sh --detect-only  # only says which Detectron2 would be used
#   bash scripts/install.sh --venv-only    # stops once the virtual environment exists
#
# If `import detectron2, detectron2._C` works with $PYTHON (an official build from GitHub source,
# in the system Python, a virtualenv or a conda environment), the venv sees that environment's
# packages (--system-site-packages, plus a .pth file with the environment's own site-packages:
# a venv's --system-site-packages alone would expose its base interpreter instead) and that build
# is used as is, with the environment's torch and torchvision (the ones its compiled ops were
# built against: requirements.txt's torch pins are not installed then). Otherwise the Python package of Detectron2 0.6 is installed from the PyPI source distribution
# `pb1-detectron2==0.6` (sha256 pinned), without its C++ extension, with a `detectron2._C`
# placeholder that explains how to get the compiled ops (see docs/install.md, "Detectron2 builds").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
D2_SDIST_SHA256="5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
STAMP="$VENV/.iou_aware_installed"

cd "$ROOT"

official_d2=0
if "$PYTHON" -c "import detectron2, detectron2._C" >/dev/null 2>&1; then
    official_d2=1
    d2_location="$("$PYTHON" -c "import detectron2; print(detectron2.__file__)")"
    echo "[install] official Detectron2 found with $PYTHON: $d2_location"
else
    echo "[install] no compiled Detectron2 with $PYTHON: the pb1-detectron2==0.6 fallback will be installed"
fi
if [ "${1:-}" = "--detect-only" ]; then
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "[install] creating virtual environment $VENV"
    if [ "$official_d2" = 1 ]; then
        "$PYTHON" -m venv --system-site-packages "$VENV"
        # The environment's own site-packages (a venv's or conda env's), which
        # --system-site-packages does not expose when $PYTHON is itself a venv. Added with
        # site.addsitedir, as Python adds its own site-packages: the .pth files in them run too,
        # so that an editable Detectron2 (pip install -e: a finder module, or an egg-link in
        # easy-install.pth) is found as well as a regular one.
        venv_site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
        "$PYTHON" -c 'import sysconfig; p = sysconfig.get_paths(); dirs = list(dict.fromkeys([p["purelib"], p["platlib"]])); print("import site; " + "; ".join(f"site.addsitedir({d!r})" for d in dirs))' \
            > "$venv_site/_iou_aware_parent_environment.pth"
    else
        "$PYTHON" -m venv "$VENV"
    fi
fi
if [ "${1:-}" = "--venv-only" ]; then
    exit 0
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

# The patch of the Detectron2 0.6 sdist, recorded in the venv by the install it made: a changed
# patch reinstalls that Detectron2 (an official build is never touched).
d2_patch_hash="$(cat scripts/patch_detectron2_sdist.py scripts/detectron2_C_placeholder.py | sha256sum | cut -d' ' -f1)"
D2_PATCH_STAMP="$VENV/.iou_aware_detectron2_patch"
requirements_hash="$(cat requirements.txt scripts/install.sh setup.py projects/iou_aware/layers/csrc/* \
    scripts/patch_detectron2_sdist.py scripts/detectron2_C_placeholder.py | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$requirements_hash" ]; then
    echo "[install] environment up to date ($VENV)"
    exit 0
fi

if [ "$official_d2" = 1 ]; then
    echo "[install] installing requirements into $VENV, keeping the environment's torch and torchvision"
    requirements="$(mktemp)"
    grep -v -E '^(torch|torchvision)([=<>! ]|$)' requirements.txt > "$requirements"
    "${PIP[@]}" install -r "$requirements"
    rm -f "$requirements"
else
    echo "[install] installing requirements (torch, torchvision, ...) into $VENV"
    "${PIP[@]}" install -r requirements.txt
fi

install_d2=0
if ! "$PY" -c "import detectron2" >/dev/null 2>&1; then
    echo "[install] Detectron2 not found: installing pb1-detectron2==0.6 without its C++ extension"
    install_d2=1
elif "$PY" -c "import detectron2._C as c; raise SystemExit(0 if getattr(c, 'IS_IOU_AWARE_PLACEHOLDER', False) else 1)" >/dev/null 2>&1 \
    && [ "$(cat "$D2_PATCH_STAMP" 2>/dev/null)" != "$d2_patch_hash" ]; then
    echo "[install] the pb1-detectron2==0.6 in $VENV was patched by another scripts/patch_detectron2_sdist.py: reinstalling it"
    install_d2=1
fi
if [ "$install_d2" = 1 ]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    # Its setup.py imports torch, so download with the venv's pip and no build isolation.
    "${PIP[@]}" download --no-deps --no-build-isolation --no-binary :all: \
        -d "$work" "pb1-detectron2==0.6"
    sdist="$(ls "$work"/pb1*detectron2-0.6.tar.gz)"
    echo "$D2_SDIST_SHA256  $sdist" | sha256sum -c -
    tar -xzf "$sdist" -C "$work"
    src="$(ls -d "$work"/pb1*detectron2-0.6)"
    "$PY" "$ROOT/scripts/patch_detectron2_sdist.py" "$src"
    "${PIP[@]}" install --no-deps --no-build-isolation --use-pep517 --force-reinstall "$src"
    echo "$d2_patch_hash" > "$D2_PATCH_STAMP"
fi

echo "[install] installing iou_aware (editable)"
# --use-pep517: with `wheel` installed and no pyproject.toml, pip would take the legacy
# `setup.py develop` route, which setuptools 80 runs as a pip install with build isolation: there
# torch is missing and the optional C++ kernel is skipped without a word.
"${PIP[@]}" install --no-deps --no-build-isolation --use-pep517 -e "$ROOT"

"$PY" -c "
import detectron2, iou_aware, torch, torchvision
print('[install] detectron2', detectron2.__version__, 'from', detectron2.__file__)
print('[install] torch', torch.__version__, 'torchvision', torchvision.__version__, 'CUDA', torch.version.cuda,
      '(a GPU is visible)' if torch.cuda.is_available() else '(no GPU visible)')
"
echo "$requirements_hash" > "$STAMP"
