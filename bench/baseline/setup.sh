#!/usr/bin/env bash
# The PyTorch + PEFT baseline of `npm run bench` (bench/side-by-side.ts): a virtual
# environment at bench/baseline/.venv (git-ignored) with torch, transformers and peft
# from this machine's local package index. Not part of `npm run setup`: peftc itself
# needs no Python. Run once:  bash bench/baseline/setup.sh
# Environment: PYTHON (default python3) makes the venv; PIP_INDEX_ARGS overrides the
# index flags (e.g. PIP_INDEX_ARGS="" to use pip's configured index).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"
index_args="${PIP_INDEX_ARGS---index-url file:///opt/pypi/simple --extra-index-url file:///opt/pypi-more/simple}"

if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv with $($python --version 2>&1)"
  "$python" -m venv "$venv"
fi
# shellcheck disable=SC2086
"$venv/bin/python" -m pip install --disable-pip-version-check $index_args torch transformers peft
"$venv/bin/python" -c 'import torch, transformers, peft; print(f"baseline ready: torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")'
