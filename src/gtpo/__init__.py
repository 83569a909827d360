"""GTPO: Group-relative Trajectory-based Policy Optimization for TRL (arXiv 2508.03772)."""

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["GTPOConfig", "GTPOTrainer"]

if TYPE_CHECKING:
    from gtpo.config import GTPOConfig
    from gtpo.trainer import GTPOTrainer


def __getattr__(name: str):
    # The config and the trainer import TRL and transformers; load them only when asked for.
    if name == "GTPOConfig":
        from gtpo.config import GTPOConfig

        return GTPOConfig
    if name == "GTPOTrainer":
        from gtpo.trainer import GTPOTrainer

        return GTPOTrainer
    raise AttributeError(f"module 'gtpo' has no attribute {name!r}")
