"""Models: `build_model(config.model) -> flax.linen.Module` (design.md 'Models').

    module = build_model(config.model)
    variables = module.init(jax.random.key(0), clips, train=False)  # clips [B, T, H, W, 3]
    logits = module.apply(variables, clips, train=False)             # [B, num_classes]
    logits, updates = module.apply(variables, clips, train=True,
                                   mutable=["batch_stats"], rngs={"dropout": key})

Registered models (fields: `default_model_config(name)`):
  tsn: Recognizer2D over a 2D ResNet (TSN as in the TSM code base).
  tcp: TCPNet, a 2D backbone with the temporal-attentive covariance pooling head.
"""

from vidjax.models.registry import (build_backbone, build_model, default_backbone_config,
                                    default_model_config, example_input_shape, known_backbones,
                                    known_models, register_backbone, register_model,
                                    resolve_model_config)

# Importing registers the built-in backbones and models.
from vidjax.models import backbones as _backbones  # noqa: F401  isort: skip
from vidjax.models import tsn as _tsn  # noqa: F401  isort: skip
from vidjax.models import tcp as _tcp  # noqa: F401  isort: skip

__all__ = [
    "build_backbone", "build_model", "default_backbone_config", "default_model_config",
    "example_input_shape", "known_backbones", "known_models", "register_backbone",
    "register_model", "resolve_model_config",
]


def frozen_param_mask(model_config, params):
  """Pytree of bools like `params`: True for parameters that must get no update at all.

  Frozen stages and partial-BN affines already get no gradient inside the model; the
  optimiser must also skip their weight decay, as upstream leaves them out of it.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from vidjax.models.backbones import FROZEN_PARAM_RULES  # pylint: disable=g-import-not-at-top
  backbone = resolve_model_config(model_config).get("backbone")
  rule = None if backbone is None else FROZEN_PARAM_RULES.get(backbone.name)

  def frozen(path, _):
    keys = [getattr(k, "key", str(k)) for k in path]
    if rule is None or keys[0] != "backbone":
      return False
    return rule(keys[1:], backbone.frozen_stages, backbone.partial_bn)

  return jax.tree_util.tree_map_with_path(frozen, params)
