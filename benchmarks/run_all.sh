#!/usr/bin/env bash
# Regenerates every figure in benchmarks/RESULTS.md on CPU: conflict detection (full grid), training
# step (demo and ~100M models), learning (7 variants x 3 seeds, two runs at a time), stability (3 cells
# x 6 variants x 5 seeds on the demo model; GTPO and GRPO on SmolLM2-135M, 30 minutes of RL a run).
# About 4 hours on 2 CPU cores (learning and the rest 1, stability 1.5, SmolLM2 about 1.5). Prints the
# tables; the plots go to benchmarks/learning_{main,ablations}.png and benchmarks/stability_*.png.
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/conflict_detection.py --grid full --repeats 1
python benchmarks/training_step.py --sizes demo --steps 10 --warmup 2
python benchmarks/training_step.py --sizes 100m --steps 6 --warmup 1
python benchmarks/learning.py --jobs 2 --out runs/learning
python benchmarks/stability.py --jobs 2 --out runs/stability
python benchmarks/stability.py --jobs 2 --model smollm2-135m --out runs/stability_smollm2
