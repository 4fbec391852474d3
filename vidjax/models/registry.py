"""Model and backbone registries: config name -> constructor, with strict field checks.

Every registered model has a default config. `build_model` checks the given config
against it: an unknown field (a typo) raises, naming the field and listing the accepted
ones; a missing field takes its default. Nested ConfigDicts (e.g. `backbone`) are checked
against the default of their own `name`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import ml_collections

ConfigDict = ml_collections.ConfigDict


@dataclasses.dataclass(frozen=True)
class Entry:
  """A registered model or backbone.

  constructor: takes the full (validated, defaults filled in) ConfigDict.
  defaults: returns a fresh default ConfigDict (must contain `name`).
  input_shape: an example clip shape for this config, used by the converters to trace
    the model with `jax.eval_shape` (no computation happens).
  """
  constructor: Callable[..., nn.Module]
  defaults: Callable[[], ConfigDict]
  input_shape: Callable[[ConfigDict], tuple[int, ...]] = lambda cfg: (1, 2, 224, 224, 3)


_MODELS: dict[str, Entry] = {}
_BACKBONES: dict[str, Entry] = {}


def register_model(name: str, defaults: Callable[[], ConfigDict],
                   input_shape: Callable[[ConfigDict], tuple[int, ...]] | None = None):
  """Decorator: `@register_model("tsn", tsn_defaults)` on `constructor(config) -> Module`."""
  def wrap(constructor):
    kwargs = {} if input_shape is None else {"input_shape": input_shape}
    _MODELS[name] = Entry(constructor, defaults, **kwargs)
    return constructor
  return wrap


def register_backbone(name: str, defaults: Callable[[], ConfigDict]):
  """Decorator for `constructor(backbone_config, dtype, **hooks) -> Module`."""
  def wrap(constructor):
    _BACKBONES[name] = Entry(constructor, defaults)
    return constructor
  return wrap


def known_models() -> list[str]:
  return sorted(_MODELS)


def known_backbones() -> list[str]:
  return sorted(_BACKBONES)


def _lookup(table: dict[str, Entry], name: str, what: str, path: str) -> Entry:
  if name not in table:
    raise ValueError(f"unknown {what} {path}.name={name!r}; known {what}s: "
                     f"{', '.join(sorted(table))}")
  return table[name]


def default_model_config(name: str) -> ConfigDict:
  """A fresh ConfigDict with every field of model `name` at its default."""
  return _lookup(_MODELS, name, "model", "model").defaults()


def default_backbone_config(name: str) -> ConfigDict:
  return _lookup(_BACKBONES, name, "backbone", "backbone").defaults()


def _merge(config: ConfigDict, defaults: ConfigDict, path: str, errors: list[str]) -> ConfigDict:
  """defaults overridden by config; records unknown fields in `errors`."""
  merged = ConfigDict(defaults.to_dict())
  for key in config.keys():
    value = config[key]
    if key not in defaults:
      errors.append(f"unknown field {path}.{key}; accepted fields of {path} "
                    f"({defaults.get('name', '?')}): {', '.join(sorted(defaults.keys()))}")
      continue
    if isinstance(defaults[key], ConfigDict):
      if not isinstance(value, (ConfigDict, dict)):
        errors.append(f"{path}.{key} must be a ConfigDict, got {type(value).__name__}")
        continue
      value = ConfigDict(value) if isinstance(value, dict) else value
      sub_defaults = defaults[key]
      if key == "backbone":  # the backbone's own defaults depend on its name
        sub_name = value.get("name", sub_defaults.get("name"))
        if sub_name not in _BACKBONES:
          errors.append(f"unknown backbone {path}.{key}.name={sub_name!r}; known backbones: "
                        f"{', '.join(known_backbones())}")
          continue
        sub_defaults = _BACKBONES[sub_name].defaults()
      value = _merge(value, sub_defaults, f"{path}.{key}", errors)
    with merged.ignore_type():
      merged[key] = value
  return merged


def resolve_model_config(model_config: ConfigDict) -> ConfigDict:
  """Validates `model_config` and fills in defaults. Raises ValueError on unknown fields."""
  if "name" not in model_config:
    raise ValueError(f"model config has no 'name'; known models: {', '.join(known_models())}")
  entry = _lookup(_MODELS, model_config.name, "model", "model")
  errors: list[str] = []
  merged = _merge(model_config, entry.defaults(), "model", errors)
  if errors:
    raise ValueError("invalid model config:\n  " + "\n  ".join(errors))
  return merged


def build_model(model_config: ConfigDict) -> nn.Module:
  """`config.model` -> an unbound flax Module (see design.md 'Models')."""
  config = resolve_model_config(model_config)
  return _MODELS[config.name].constructor(config)


def build_backbone(backbone_config: ConfigDict, dtype, **hooks) -> nn.Module:
  """A validated backbone ConfigDict -> module; `hooks` are the block hook factories."""
  entry = _lookup(_BACKBONES, backbone_config.name, "backbone", "model.backbone")
  return entry.constructor(backbone_config, dtype, **hooks)


def example_input_shape(model_config: ConfigDict) -> tuple[int, ...]:
  """An input shape that `module.init` accepts for this config (clips, [B, T, H, W, 3])."""
  config = resolve_model_config(model_config)
  return tuple(_MODELS[config.name].input_shape(config))
