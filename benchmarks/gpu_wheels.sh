#!/usr/bin/env bash
# Downloads into .whl/ (ignored by git) the wheels benchmarks/gpu_check.sh installs on the GPU
# machine, which has Python 3.12 and no network: the packages it lacks, at the versions tested here.
# Extra NAME==VERSION arguments are fetched too: if gpu_check.sh's first line (the versions) fails
# there on an import, e.g. datasets 5.2 on an older pyarrow, add it: `bash benchmarks/gpu_wheels.sh
# pyarrow==26.0.1` (about 42 MiB; the carried files may total 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl trl==1.16.0 transformers==5.24.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 "$@"
ls -l .whl
du -sh .whl
