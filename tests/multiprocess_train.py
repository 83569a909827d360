"""Run by tests/test_multiprocess.py under `accelerate launch --config_file configs/accelerate/X.yaml`
with two CPU processes: two GTPO steps of the tiny test model, then each process writes what it
saw (world size, distributed type, the model's wrapper, steps, losses, a checksum of the full
parameters before and after training, the gloo threads left after gtpo.trainer.end_process_group)
to OUT_DIR/rank{N}.json.
"""

import json
import sys
from pathlib import Path

import torch
from accelerate.utils.operations import GatheredParameters
from conftest import tiny_config
from datasets import Dataset

from gtpo.app.models import build_tiny_model, build_tokenizer
from gtpo.trainer import GTPOTrainer, end_process_group


def reward(completions, **kwargs):
    return [float(len(c[0]["content"]) % 5) for c in completions]


def checksum(state: dict[str, torch.Tensor]) -> float:
    return float(sum(value.float().abs().sum() for value in state.values()))


def gloo_threads() -> int:
    """This process's gloo worker threads, by name (Linux)."""
    tasks = Path("/proc/self/task").iterdir()
    return sum((task / "comm").read_text().startswith("pt_gloo") for task in tasks)


def train(out_dir: str) -> dict:
    torch.set_num_threads(1)
    tokenizer = build_tokenizer()
    model = build_tiny_model(tokenizer, size="test", seed=0)
    initial = checksum(model.state_dict())
    prompts = [{"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}]} for i in range(8)]
    config = tiny_config(Path(out_dir))  # the trainer tests' configuration
    trainer = GTPOTrainer(
        model=model,
        reward_funcs=reward,
        args=config,
        train_dataset=Dataset.from_list(prompts),
        processing_class=tokenizer,
    )
    trainer.train()
    with GatheredParameters(list(trainer.model.parameters())):  # ZeRO-3: each process's full parameters
        final = checksum(dict(trainer.model.named_parameters()))
    accelerator = trainer.accelerator
    result = {
        "rank": accelerator.process_index,
        "world": accelerator.num_processes,
        "distributed_type": str(accelerator.distributed_type),
        "wrapper": type(trainer.model_wrapped).__name__,
        "steps": trainer.state.global_step,
        "losses": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
        "initial_checksum": initial,
        "final_checksum": final,
        "gloo_threads_in_training": gloo_threads(),
    }
    return result


def main(out_dir: str) -> None:
    result = train(out_dir)  # the trainer is freed on return, as in `gtpo train`
    end_process_group()
    result["gloo_threads_after_end"] = gloo_threads()
    with open(f"{out_dir}/rank{result['rank']}.json", "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
