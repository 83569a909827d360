"""GTPO: Group-relative Trajectory-based Policy Optimization for TRL (arXiv 2508.03772)."""

__version__ = "0.1.0"
