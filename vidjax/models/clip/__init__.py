"""CLIP family: the image and text towers (encoders.py, transformer.py) and the
frame-wise CLIP video classifier (recognizer.py, `model.name = "clip"`)."""

from vidjax.models.clip import recognizer as _recognizer  # noqa: F401  (registers "clip")
