"""CLIP (model.name "clip", converter source "clip"): the full ViT-B/16's names and shapes
through the converter, class names and prompts. Numerics: tests/test_parity.py's clip rows;
bfloat16 training: tests/test_tc_clip.py's per-protocol tests (fully supervised)."""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_config
import converters
from converters import clip as clip_converter
from vidjax import models
from vidjax.models.clip import recognizer
from vidjax.text import tokenize

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
  sys.path.insert(0, HERE)


def test_full_vitb16_state_dict_names_and_shapes():
  """OpenAI's ViT-B/16 layout (302 tensors in fp16 plus the TorchScript size entries)
  converts onto our full-size model: every name and shape, float32, 149.6M parameters."""
  torch = pytest.importorskip("torch")
  from torch_references import clip as clip_ref  # pylint: disable=import-outside-toplevel
  config = load_config("clip_vitb16")
  m = models.resolve_model_config(config.model)
  with torch.device("meta"):   # names and shapes only
    ref = clip_ref.ClipVideo(m, np.zeros((1, 30), np.int64))
  shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
  assert len(shapes) == 302
  assert shapes["visual.transformer.resblocks.11.attn.in_proj_weight"] == (2304, 768)
  assert shapes["transformer.resblocks.11.attn.in_proj_weight"] == (1536, 512)
  # Zero-stride fp16 views: the archive's dtype without allocating 150M values twice.
  zero = np.zeros((), np.float16)
  sd = {k: np.broadcast_to(zero, s) for k, s in shapes.items()}
  sd.update(input_resolution=torch.tensor(224), context_length=torch.tensor(77),
            vocab_size=torch.tensor(49408))
  # One trace of the model (convert() would trace it again for each call).
  abstract = converters.expected_variables(config.model)
  variables = clip_converter.convert_variables(sd, config.model, abstract)
  flat = jax.tree_util.tree_flatten_with_path(variables)[0]
  want = jax.tree_util.tree_flatten_with_path(abstract)[0]
  assert [(p, v.shape) for p, v in flat] == [(p, v.shape) for p, v in want]
  assert all(v.dtype == jnp.float32 for _, v in flat)
  assert sum(int(np.prod(v.shape)) for _, v in flat) == 149_620_737
  del variables
  sd["input_resolution"] = torch.tensor(336)
  with pytest.raises(converters.ConversionError, match="input_resolution = 336, the model "
                     "config has 224"):
    clip_converter.convert_variables(sd, config.model, abstract)


def test_class_names_and_prompts(tmp_path):
  cfg = models.resolve_model_config(load_config("clip_vitb16", "smoke").model)
  cfg.update(class_names=("ApplyEyeMakeup", "Yo-Yo", "brush_hair"), num_classes=0)
  assert recognizer.prompts(cfg) == ["a photo of a Apply Eye Makeup.", "a photo of a Yo- Yo.",
                                     "a photo of a brush_hair."]
  cfg.replace_underscores = True
  cfg.prompt = "{}"
  assert recognizer.prompts(cfg)[2] == "brush hair"
  # A label file wins over class_names; its count must match a non-zero num_classes.
  (tmp_path / "labels.txt").write_text("JumpingJack\nplaying cards\n")
  cfg.label_file = str(tmp_path / "labels.txt")
  assert recognizer.prompts(cfg) == ["Jumping Jack", "playing cards"]
  cfg.num_classes = 3
  with pytest.raises(ValueError, match=r"model.label_file .* has 2 class names but "
                     "model.num_classes=3"):
    recognizer.class_names(cfg)
  cfg.update(label_file="", num_classes=0, context_length=3)
  with pytest.raises(ValueError, match="does not fit model.context_length=3.*'Apply Eye Makeup'"):
    recognizer.prompt_tokens(cfg)
  cfg.prompt = "a {} b {}"
  with pytest.raises(ValueError, match="must hold one"):
    recognizer.prompts(cfg)


def test_class_names_override_on_the_command_line():
  """`--config.model.class_names="('a', 'b c')"` alone gives a 2-class model."""
  from vidjax import run_config  # pylint: disable=import-outside-toplevel
  config = run_config.load(os.path.join(HERE, "..", "configs", "clip_vitb16.py:vanilla"),
                           ["model.class_names=('a', 'b c')"])
  module = models.build_model(config.model)
  assert config.model.class_names == ("a", "b c")
  np.testing.assert_array_equal(module.prompt_tokens, tokenize(["a", "b c"], 30))
