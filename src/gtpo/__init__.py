"""GTPO: Group-relative Trajectory-based Policy Optimization for TRL (arXiv 2508.03772)."""

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["GTPOConfig", "GTPOTrainer"]

if TYPE_CHECKING:
    from gtpo.trainer import GTPOConfig, GTPOTrainer


def __getattr__(name: str):
    # The trainer imports TRL and transformers; load it only when asked for.
    if name in __all__:
        from gtpo import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'gtpo' has no attribute {name!r}")
