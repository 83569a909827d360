"""Several processes under `accelerate launch` (or torchrun): which process this is, the few
collectives the application needs outside the trainer, a failure on one process ending all, and
DeepSpeed's references to process groups dropped at the end of a run.

With one process (no launch) every function is a no-op or the identity. The process group is the
one accelerate's PartialState sets up from the launch's environment, the same the trainers use.
"""

from __future__ import annotations

import gc
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def world_size() -> int:
    """How many processes the launch started (1 without a launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's index among them (0 without a launch)."""
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Whether this is the process that writes files and prints."""
    return rank() == 0


def _state():
    """accelerate's PartialState: the one the trainers set up, or (before any) a new one, over
    gloo without GPUs (accelerate sets up several CPU processes only when asked for the CPU)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def start() -> None:
    """Join the launch's process group now (it is otherwise joined by the first trainer)."""
    if world_size() > 1:
        _state()


def device():
    """This process's device (its GPU under a GPU launch)."""
    return _state().device


def barrier() -> None:
    """Wait until every process gets here."""
    if world_size() > 1:
        _state().wait_for_everyone()


def shard(items: list[T]) -> list[T]:
    """This process's share of `items`: every world_size()-th one, from its rank."""
    return items[rank() :: world_size()]


def gather(value: T) -> list[T]:
    """`value` from every process, in rank order, on every process."""
    if world_size() == 1:
        return [value]
    _state()
    from accelerate.utils import gather_object

    return gather_object([value])


def broadcast(value: T) -> T:
    """The main process's `value`, on every process."""
    if world_size() == 1:
        return value
    _state()
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def fail_fast(command: str, run: Callable[[], int]) -> int:
    """run(), whose result is an exit code. With several processes, a failure on this one (an
    exception or a non-zero code) ends it at once with os._exit, after its traceback and the line
    `gtpo COMMAND: process R of N failed: ...`: the launcher then stops the others (torchrun does
    at the first failed process), and a process waiting for this one in a collective fails there
    (gloo: connection closed by peer) and ends the same way. Interpreter teardown is skipped: with
    a process group still up it can hang (gtpo.trainer.end_process_group)."""
    if world_size() == 1:
        return run()
    try:
        code = run()
    except BaseException as error:  # every failure must end this process, whatever it is
        traceback.print_exc()
        first = str(error).splitlines()[0] if str(error) else ""
        print(
            f"gtpo {command}: process {rank()} of {world_size()} failed: {type(error).__name__}: {first}",
            file=sys.stderr,
        )
        code = 1
    if code != 0:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def release_deepspeed_groups(world) -> None:
    """Drop DeepSpeed's references to process groups (`world`: the default group), so that
    destroying them joins their threads (gtpo.trainer.end_process_group calls it).

    - A DeepSpeedEngine is kept alive by the hooks it registers on the model and its parameters
      (reference cycles through autograd that the garbage collector cannot see), with its ZeRO
      optimizer and their groups: each engine still alive is destroyed (its hooks removed).
    - `deepspeed.utils.groups` keeps the groups it creates in module globals, and ZeRO-3 its
      model (and through the model's hooks its engine) in `parameter_offload.FWD_MODULE_STACK` and
      in the class-wide lru_cache of a PartitionedParameterCoordinator method.
    - DeepSpeed's TorchBackend takes `torch.distributed.GroupMember.WORLD` as the default of its
      barriers' `group` argument, evaluated when deepspeed is first imported: imported after the
      group is up (accelerate imports it lazily, during training, whenever it is installed), the
      defaults hold the world group for good. None means the world group to them, as to torch.
    """
    if "deepspeed" not in sys.modules:
        return
    import torch
    from deepspeed import DeepSpeedEngine
    from deepspeed.comm.torch import TorchBackend
    from deepspeed.utils import groups

    offload = sys.modules.get("deepspeed.runtime.zero.parameter_offload")
    if offload is not None:
        offload.FWD_MODULE_STACK.clear()
    coordinator = sys.modules.get("deepspeed.runtime.zero.partitioned_param_coordinator")
    if coordinator is not None:
        for method in vars(coordinator.PartitionedParameterCoordinator).values():
            cells = getattr(method, "__closure__", None) or ()  # the cache sits inside a wrapper
            for cached in [method, *(cell.cell_contents for cell in cells)]:
                if hasattr(cached, "cache_clear"):
                    cached.cache_clear()
    for engine in [obj for obj in gc.get_objects() if isinstance(obj, DeepSpeedEngine)]:
        engine.destroy()
    for name, value in list(vars(groups).items()):
        if isinstance(value, torch.distributed.ProcessGroup):
            setattr(groups, name, None)
        elif isinstance(value, dict) and any(
            isinstance(v, torch.distributed.ProcessGroup) for v in value.values()
        ):
            value.clear()
    for method in vars(TorchBackend).values():
        function = inspect.unwrap(method) if callable(method) else None
        defaults = getattr(function, "__defaults__", None)
        if defaults and any(value is world for value in defaults):
            function.__defaults__ = tuple(None if value is world else value for value in defaults)
    gc.collect()
