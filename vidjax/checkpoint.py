"""Public checkpoint API: `load_variables` and `save_variables` (see design.md)."""

from vidjax.train.checkpoint import CheckpointError, load_variables, save_variables

__all__ = ["CheckpointError", "load_variables", "save_variables"]
