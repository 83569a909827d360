"""benchmarks/gpu_check.sh --small: the prepared GPU check at CPU sizes (about a minute)."""

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from benchmarks.common import STEP_PAIRS
from benchmarks.gpu_check import FULL, SMALL

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_small_mode_runs_on_cpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    script = ROOT / "benchmarks" / "gpu_check.sh"
    result = subprocess.run(
        ["bash", str(script), "--small"], capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["failures"] == []
    assert list(report["step"]["pairs"]) == list(SMALL.step_pairs)
    assert set(SMALL.step_pairs) < set(STEP_PAIRS) == set(FULL.step_pairs)
    for pair in report["step"]["pairs"].values():
        assert pair["step_ratio"] > 0 and pair["memory_ratio"] > 0
        for variant in (pair["ours"], pair["theirs"]):
            assert variant["step_s"] > 0 and variant["peak_mib"] > 0
            assert all(math.isfinite(loss) for loss in variant["losses"])
    assert [row["agree"] for row in report["conflict"]] == [True]
    assert report["tiny"]["dtype"] == "torch.bfloat16" and report["tiny"]["moved_tensors"] > 0
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "| GTPO+dapo / dapo, aligned |" in markdown and "## Conflict detection" in markdown
