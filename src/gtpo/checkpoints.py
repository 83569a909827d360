"""Crash-safe checkpoints and a data order that survives a resume.

A checkpoint directory is complete or absent. GTPOTrainer has transformers write each checkpoint
into a staging directory beside the run's checkpoints (`run_dir/tmp-checkpoint-N/checkpoint-N`),
flushes every file to disk, then renames it to `run_dir/checkpoint-N` in one step. A crash before
the rename leaves only the staging directory: resuming ignores it (transformers looks for
`checkpoint-N` names only) and the next save deletes it. Checkpoints beyond `save_total_limit` are
renamed into staging names before they are deleted, so deleting one never leaves a partial
`checkpoint-N` either.

A checkpoint can still be damaged afterwards (a full disk, a copy cut short): `usable_checkpoint`
checks the one a resume would load (`checkpoint_problem`: files present, safetensors headers and
torch zip archives readable, the JSON state parsing) and falls back to the newest sound one.

`CrashSafeCheckpoints` is the trainer mixin that does all this, and restores what a resumed run
needs to continue exactly. It is the only place that overrides transformers' and TRL's
checkpoint methods (the private names are listed in docs/training.md).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import torch
from safetensors import safe_open
from torch.utils.data import Sampler
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, sort_checkpoints

STAGING_PREFIX = f"tmp-{PREFIX_CHECKPOINT_DIR}-"
STATE_FILE = "gtpo_state.json"
BUFFER_FILE = "generation_buffer_{}.pt"  # one per process, only when saved mid-generation-batch


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


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")


def checkpoint_problem(folder: str) -> str | None:
    """What makes checkpoint `folder` unusable for a resume, in a few words; None when it is sound.

    Checked without loading tensors: the weights, trainer_state.json and the optimizer state are
    present (DeepSpeed's own global_step* directory counts as the optimizer state); every
    safetensors file's header parses and the file is as long as the header says; every torch file
    (optimizer, scheduler, RNG states, generation buffers) is a readable zip archive; the JSON
    state files parse."""
    names = set(os.listdir(folder))
    if not names & set(WEIGHT_FILES):
        return "no model weights (model.safetensors)"
    if TRAINER_STATE_NAME not in names:
        return f"no {TRAINER_STATE_NAME}"
    deepspeed = any(name.startswith("global_step") for name in names)
    if "optimizer.pt" not in names and not deepspeed:
        return "no optimizer.pt"
    for name in sorted(names):
        path = os.path.join(folder, name)
        try:
            if name.endswith(".safetensors"):
                _check_safetensors(path)
            elif name.endswith((".pt", ".pth")) and os.path.isfile(path):
                with zipfile.ZipFile(path):
                    pass
            elif name.endswith(".json"):
                with open(path) as file:
                    json.load(file)
        except Exception as error:  # any failure to read means the resume would fail
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            return f"{name} is unreadable ({reason})"
    return None


def _check_safetensors(path: str) -> None:
    """Raise if the safetensors file's header does not parse or its data is cut short."""
    with safe_open(path, framework="pt") as file:  # validates the header against the file size
        file.keys()


def usable_checkpoint(run_dir: str, report: Callable[[str], None]) -> str | None:
    """The newest checkpoint in `run_dir` that `checkpoint_problem` finds sound, or None; each newer
    one it skips is reported in one line through `report`. Nothing is deleted."""
    for path in reversed(sort_checkpoints(run_dir)):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        report(f"{path}: damaged, not resumed from: {problem}")
    return None


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


class CrashSafeCheckpoints:
    """Mixin for TRL's GRPOTrainer (listed before it): checkpoints complete or absent, the data
    order replayed on resume, and TRL's micro-step counter and generation buffer restored.

    The trainer adds its own state through `resume_state()` / `load_resume_state(state)`; both are
    stored in STATE_FILE of each checkpoint.
    """

    _staging_dir: str | None = None  # set while a checkpoint is being written

    def resume_state(self) -> dict[str, Any]:
        """The trainer's own state to store with a checkpoint (JSON values)."""
        return {}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        """Restore what resume_state() returned."""

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        """Trainer.train, resuming only from a sound checkpoint (`checkpoint_problem`): `True` takes
        the newest sound one in output_dir (each damaged newer one named on stderr), a path that is
        damaged raises ValueError naming the problem."""
        if resume_from_checkpoint is True:
            report = functools.partial(print, file=sys.stderr)
            resume_from_checkpoint = usable_checkpoint(self.args.output_dir, report)
            if resume_from_checkpoint is None:
                raise ValueError(f"no sound checkpoint to resume from in {self.args.output_dir}")
        elif resume_from_checkpoint and os.path.isdir(resume_from_checkpoint):
            problem = checkpoint_problem(resume_from_checkpoint)
            if problem is not None:
                raise ValueError(f"{resume_from_checkpoint}: damaged, cannot resume from it: {problem}")
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _get_train_sampler(self, dataset=None):
        return EpochSeededSampler(super()._get_train_sampler(dataset))

    def _get_output_dir(self, trial) -> str:
        # While a checkpoint is being saved, transformers writes it into the staging directory.
        return self._staging_dir or super()._get_output_dir(trial)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        if self._staging_dir is None:  # pushed once renamed to its final place
            super()._push_from_checkpoint(checkpoint_folder)

    def _save_checkpoint(self, model, trial):
        run_dir = self._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = staging_dir(run_dir, name)
        staged, final = os.path.join(staging, name), os.path.join(run_dir, name)
        if self.args.should_save:
            remove_staging(run_dir)
        self.accelerator.wait_for_everyone()
        self._staging_dir = staging
        try:
            super()._save_checkpoint(model, trial)
            self._save_resume_state(staged)
        finally:
            self._staging_dir = None
        if self.state.best_model_checkpoint == staged:
            self.state.best_model_checkpoint = final
            if self.args.should_save:
                self.state.save_to_json(os.path.join(staged, TRAINER_STATE_NAME))
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            publish(staged, final)
            prune(run_dir, self.args.save_total_limit, self.state.best_model_checkpoint)
        if self.args.push_to_hub:
            self._push_from_checkpoint(final)

    def _save_resume_state(self, folder: str) -> None:
        """The trainer's state and TRL's micro-step count; TRL's generation buffer when the next
        step reuses it."""
        if self.args.should_save:
            with open(os.path.join(folder, STATE_FILE), "w") as f:
                json.dump({**self.resume_state(), "micro_step": self._step}, f)
        if self._step % (self.args.steps_per_generation * self.num_iterations) != 0:
            buffer = os.path.join(folder, BUFFER_FILE.format(self.accelerator.process_index))
            torch.save(self._buffered_inputs, buffer)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, STATE_FILE)
        if os.path.exists(path):
            with open(path) as f:
                state = json.load(f)
            self.load_resume_state(state)
            self._step = state.get("micro_step", 0)
        buffer = os.path.join(checkpoint, BUFFER_FILE.format(self.accelerator.process_index))
        if os.path.exists(buffer):
            self._buffered_inputs = torch.load(
                buffer, map_location=self.accelerator.device, weights_only=True
            )
