#!/usr/bin/env bash
# The prepared GPU check (benchmarks/gpu_check.py), bounded to 8 minutes, for the lent GPU machine
# (bare, no network, Python 3.12, torch with CUDA, transformers 5.17, no trl) or any machine:
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine; writes $OUT/gpu_check.{json,md}
#   bash benchmarks/gpu_check.sh --small    # CPU-sized checks, a few minutes; OUT defaults to ./gpu_check_out
#
# Packages: gtpo itself runs from src/ (PYTHONPATH). What the GPU machine lacks travels as wheels in
# .whl/ (ignored by git, about 13 MiB; the 64 MiB limit on carried files leaves room):
#   trl 1.16.0, transformers 5.24.0 (the project needs >= 5.20), datasets 5.2.0, dill 0.4.1,
#   multiprocess 0.70.19
# `bash benchmarks/gpu_wheels.sh` downloads them here (pip download from PyPI). When .whl/ holds wheels,
# they are installed into a fresh temporary folder with --no-index --no-deps and put first on PYTHONPATH;
# otherwise the installed packages are used. The device tool's call:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=570)
set -euo pipefail
cd "$(dirname "$0")/.."
export OUT="${OUT:-$PWD/gpu_check_out}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
python="$(command -v python3 || command -v python)"
site=""
if compgen -G ".whl/*.whl" >/dev/null; then
  site="$(mktemp -d)"
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
fi
export PYTHONPATH="$PWD/src${site:+:$site}${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
"$python" -c "import torch, transformers, trl, datasets, accelerate; print('torch', torch.__version__, \
'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'trl', trl.__version__, \
'datasets', datasets.__version__, 'accelerate', accelerate.__version__)"
timeout --signal=INT --kill-after=20 480 "$python" -m benchmarks.gpu_check --out "$OUT" "$@" 2>&1 \
  | tee "$OUT/gpu_check.log"
