"""PyTorch checkpoint import (design.md 'Converters').

    variables = converters.convert("tsm", state_dict, config)   # config.model is used

`state_dict` maps torch keys to tensors or arrays; the result is
`{"params": ..., "batch_stats": ...}` for `vidjax.models.build_model(config.model)`.
Each source module (one per upstream code base) provides `MODELS` (the vidjax model
names it can fill) and `rename_key(key, model_config) -> our dotted path | None`; the
strict rest is shared (converters/common.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
  import ml_collections

  from converters.common import ConversionError

# SOURCE name -> module.
_SOURCES = {
    "tsm": "converters.tsm",
    "tcpnet": "converters.tcpnet",
    "gc": "converters.gc",
    "mmaction2": "converters.mmaction2",
    "clip": "converters.clip",
    "cost": "converters.cost",
    "tc_clip": "converters.tc_clip",
}

__all__ = ["ConversionError", "convert", "known_sources"]

# JAX, flax and the model registry load on first use (PEP 562), so that the CLI refuses a
# missing or damaged file, an unknown source or an unusable output before importing them.
_LAZY = ("ConversionError", "abstract_variables", "assign")


def __getattr__(name: str) -> Any:
  if name in _LAZY:
    from converters import common  # pylint: disable=g-import-not-at-top
    return getattr(common, name)
  raise AttributeError(f"module 'converters' has no attribute {name!r}")


def known_sources() -> list[str]:
  return sorted(_SOURCES)


def _source_module(source: str):
  if source not in _SOURCES:
    raise ValueError(f"unknown converter source {source!r}; known sources: "
                     f"{', '.join(known_sources())}")
  return importlib.import_module(_SOURCES[source])


# model config (JSON) -> its abstract variables: tracing a large model takes seconds, and a
# process often converts for the same model again (another layout, a strictness check).
_EXPECTED: dict[str, dict] = {}


def expected_variables(model_config: ml_collections.ConfigDict) -> dict:
  """ShapeDtypeStructs of every variable the model declares (jax.eval_shape, no compute)."""
  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp

  from converters.common import abstract_variables
  from vidjax import models
  # pylint: enable=g-import-not-at-top
  key = model_config.to_json_best_effort(sort_keys=True)
  if key not in _EXPECTED:
    module = models.build_model(model_config)
    shape = models.example_input_shape(model_config)
    _EXPECTED[key] = abstract_variables(module, jax.ShapeDtypeStruct(shape, jnp.uint8),
                                        train=False)
  return jax.tree.map(lambda x: x, _EXPECTED[key])  # a fresh tree: callers may edit it


def convert(source: str, state_dict: Mapping[str, Any],
            config: ml_collections.ConfigDict) -> dict:
  """Converts an upstream `state_dict` into vidjax variables for `config.model`.

  Args:
    source: upstream code base whose key layout `state_dict` follows, e.g. 'tsm'.
    state_dict: torch key -> tensor (or numpy array); `module.` prefixes and
      `num_batches_tracked` entries are accepted.
    config: the full config; `config.model` picks the model (a bare model config with
      a `name` field is accepted too).
  Returns:
    `{"params": ..., "batch_stats": ...}` of jax arrays.
  Raises:
    ValueError for an unknown source or a model the source does not provide;
    ConversionError listing every unused key, missing variable and shape mismatch.
  """
  from converters.common import assign  # pylint: disable=g-import-not-at-top
  from vidjax import models  # pylint: disable=g-import-not-at-top
  module = _source_module(source)
  model_config = config.model if "model" in config else config
  resolved = models.resolve_model_config(model_config)
  # Models with a head are named recognizer/head; head-less ones (clip) by their name.
  head = resolved.get("head")
  if (f"{resolved.name}/{head.name}" if head else resolved.name) not in module.MODELS:
    raise ValueError(f"source {source!r} provides models (recognizer/head) {module.MODELS}, "
                     f"not model.name={resolved.name!r}" +
                     (f" with model.head.name={head.name!r}" if head else ""))
  abstract = expected_variables(model_config)
  if hasattr(module, "convert_variables"):  # more than a key rename (tcpnet's GCP init)
    return module.convert_variables(state_dict, model_config, abstract)
  return assign(state_dict, abstract, lambda key: module.rename_key(key, model_config))
