#!/usr/bin/env bash
# Regenerates every figure in benchmarks/RESULTS.md on CPU: conflict detection (full grid), training
# step (demo and ~100M models), peak memory by vocabulary and length, learning (7 variants x 3 seeds,
# two runs at a time), stability (3 cells x 6 variants x 5 seeds on the demo model; GTPO and GRPO on
# SmolLM2-135M, 30 minutes of RL a run). About 5 hours on 2 CPU cores. Prints the tables; the plots go
# to benchmarks/memory.png, benchmarks/learning_{main,ablations}.png and benchmarks/stability_*.png.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m benchmarks.conflict_detection --grid full --repeats 1
python -m benchmarks.training_step --composed --sizes demo 100m --steps 10 --warmup 1
python -m benchmarks.memory --plot benchmarks/memory.png
python -m benchmarks.learning --jobs 2 --out runs/learning --plots benchmarks
python -m benchmarks.stability --jobs 2 --out runs/stability
python -m benchmarks.stability --jobs 2 --model smollm2-135m --out runs/stability_smollm2
