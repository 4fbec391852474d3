"""Temporal modules that plug into 2D backbone blocks (see backbones/resnet.py hooks)."""
