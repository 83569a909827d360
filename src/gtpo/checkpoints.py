"""Crash-safe checkpoints and a data order that survives a resume.

A checkpoint directory is complete or absent. GTPOTrainer has transformers write each checkpoint
into a staging directory beside the run's checkpoints (`run_dir/tmp-checkpoint-N/checkpoint-N`),
flushes every file to disk, then renames it to `run_dir/checkpoint-N` in one step. A crash before
the rename leaves only the staging directory: resuming ignores it (transformers looks for
`checkpoint-N` names only) and the next save deletes it. Checkpoints beyond `save_total_limit` are
renamed into staging names before they are deleted, so deleting one never leaves a partial
`checkpoint-N` either.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, sort_checkpoints

STAGING_PREFIX = f"tmp-{PREFIX_CHECKPOINT_DIR}-"


def staging_dir(run_dir: str, name: str) -> str:
    """Where checkpoint `name` is written before it is renamed into `run_dir`."""
    return os.path.join(run_dir, f"tmp-{name}")


def remove_staging(run_dir: str) -> None:
    """Delete what interrupted saves and deletions left behind in `run_dir`."""
    if not os.path.isdir(run_dir):
        return
    for entry in os.listdir(run_dir):
        if entry.startswith(STAGING_PREFIX):
            shutil.rmtree(os.path.join(run_dir, entry), ignore_errors=True)


def _fsync(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_tree(path: str) -> None:
    for folder, _, files in os.walk(path):
        for file in files:
            _fsync(os.path.join(folder, file))
        _fsync(folder)


def discard(path: str) -> None:
    """Delete a checkpoint directory: first renamed out of the `checkpoint-N` names, then removed."""
    parent, name = os.path.split(path)
    doomed = os.path.join(parent, f"tmp-{name}-deleted")
    if os.path.exists(doomed):  # left by an earlier interrupted deletion
        shutil.rmtree(doomed)
    os.replace(path, doomed)
    shutil.rmtree(doomed)


def publish(staged: str, final: str) -> None:
    """Flush a staged checkpoint to disk and rename it to `final` (replacing an older one)."""
    _fsync_tree(staged)
    if os.path.exists(final):
        discard(final)
    os.replace(staged, final)
    os.rmdir(os.path.dirname(staged))
    _fsync(os.path.dirname(final))


def prune(run_dir: str, limit: int | None, best: str | None) -> None:
    """Keep the `limit` latest checkpoints (and the best one, as transformers does); discard the rest."""
    ordered = sort_checkpoints(run_dir, best_model_checkpoint=best)  # by step, best second to last
    if limit is None or limit <= 0 or len(ordered) <= limit:
        return
    keep = limit if best is None or os.path.normpath(best) == ordered[-1] else max(limit, 2)
    for path in ordered[:-keep]:
        discard(path)


class EpochSeededSampler(Sampler[int]):
    """TRL's RepeatSampler, with the order of epoch e the same in a run resumed in epoch e.

    RepeatSampler draws one permutation per pass from its own generator, so a fresh sampler in a
    resumed run would start again from the first epoch's order. `set_epoch` (called by the trainer
    at each epoch) reseeds the generator and replays the permutations of the earlier epochs.
    """

    def __init__(self, sampler) -> None:
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        sampler = self.sampler
        if not sampler.shuffle or sampler.seed is None:
            return
        sampler.generator.manual_seed(sampler.seed)
        for _ in range(epoch):
            torch.randperm(sampler.num_samples, generator=sampler.generator)

    def __iter__(self) -> Iterator[int]:
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)
