"""CLIP family: the image and text towers (encoders.py, transformer.py) and the
frame-wise CLIP video classifier (recognizer.py, `model.name = "clip"`); TC-CLIP
(tc_clip.py with tc_vision.py and tc_text.py, `model.name = "tc_clip"`)."""

from vidjax.models.clip import recognizer as _recognizer  # noqa: F401  (registers "clip")
from vidjax.models.clip import tc_clip as _tc_clip  # noqa: F401  (registers "tc_clip")
