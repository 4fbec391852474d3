"""Classifier heads."""

from vidjax.models.heads.linear import CONSENSUS_TYPES, LinearHead, consensus

__all__ = ["CONSENSUS_TYPES", "LinearHead", "consensus"]
