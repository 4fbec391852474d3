"""One registry per kind of part, one registration style, strict config checks.

Kinds: `recognizer` (the model: `config.model.name`), `backbone`, `neck`, `head` (the
sub-configs `config.model.backbone`, `.neck`, `.head`) and `temporal` (the modules that
plug into 2D backbone blocks, sub-configs `config.model.<name>` with `enabled`).

Each part registers itself in its own file:

    @register("head", "tsn", tsn_head_defaults, frozen_rule=None)
    def build_tsn_head(cfg, model_cfg, dtype) -> nn.Module: ...

`resolve_model_config` fills in defaults and checks every field: a sub-config whose field
names a kind (`backbone`, `neck`, `head`) is checked against the defaults of its own
`name` in that kind's registry; an unknown name or field raises, naming it and listing
what is accepted. A neck with `name=""` is no neck.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import flax.linen as nn
import ml_collections

ConfigDict = ml_collections.ConfigDict
# rule(path below the part, part config) -> True for parameters that get no update at all.
FrozenRule = Callable[[tuple[str, ...], ConfigDict], bool]

KINDS = ("recognizer", "backbone", "neck", "head", "temporal")
# Sub-config fields of a model that are parts resolved by their `name`.
PART_FIELDS = ("backbone", "neck", "head")


@dataclasses.dataclass(frozen=True)
class Entry:
  """A registered part.

  builder: recognizers take `(config)`; backbones `(cfg, dtype, **hooks)`; necks and
    heads `(cfg, model_cfg, dtype)`; temporal modules `(cfg, model_cfg) -> {slot: factory}`.
  defaults: returns a fresh ConfigDict of every accepted field at its default.
  frozen_rule: parameters of this part that the optimiser must not update, or None.
  input_shape: an example clip shape for a config (converters trace the model on it
    with `jax.eval_shape`): a recognizer's from its model config; a backbone tied to one
    clip size (C3D) gives it from its own config, and the 3D recognizer asks it.
  """
  builder: Callable[..., Any]
  defaults: Callable[[], ConfigDict]
  frozen_rule: Optional[FrozenRule] = None
  input_shape: Optional[Callable[[ConfigDict], tuple[int, ...]]] = None


_REGISTRY: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}


def register(kind: str, name: str, defaults: Callable[[], ConfigDict], *,
             frozen_rule: Optional[FrozenRule] = None,
             input_shape: Optional[Callable[[ConfigDict], tuple[int, ...]]] = None):
  """Decorator registering `builder` as part `name` of `kind` (see the module docstring)."""
  if kind not in _REGISTRY:
    raise ValueError(f"unknown registry kind {kind!r}; kinds: {', '.join(KINDS)}")

  def wrap(builder):
    _REGISTRY[kind][name] = Entry(builder, defaults, frozen_rule, input_shape)
    return builder
  return wrap


def known(kind: str) -> list[str]:
  return sorted(_REGISTRY[kind])


def lookup(kind: str, name: str, path: str) -> Entry:
  """The entry of `name`; an unknown name raises, naming `path` and the known names."""
  table = _REGISTRY[kind]
  if name not in table:
    raise ValueError(f"unknown {kind} {path}.name={name!r}; known {kind}s: "
                     f"{', '.join(sorted(table))}")
  return table[name]


def temporal_entries() -> list[tuple[str, Entry]]:
  return sorted(_REGISTRY["temporal"].items())


def default_config(kind: str, name: str) -> ConfigDict:
  """A fresh ConfigDict with every field of part `name` at its default."""
  return lookup(kind, name, "model" if kind == "recognizer" else f"model.{kind}").defaults()


def _merge(config: ConfigDict, defaults: ConfigDict, path: str, errors: list[str]) -> ConfigDict:
  """`defaults` overridden by `config`; unknown fields go to `errors`."""
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
      if key in PART_FIELDS:  # a part's fields depend on its name
        sub_name = value.get("name", sub_defaults.get("name"))
        if key == "neck" and not sub_name:
          sub_defaults = ConfigDict(dict(name=""))
        elif sub_name not in _REGISTRY[key]:
          errors.append(f"unknown {key} {path}.{key}.name={sub_name!r}; known {key}s: "
                        f"{', '.join(known(key))}")
          continue
        else:
          sub_defaults = _REGISTRY[key][sub_name].defaults()
      value = _merge(value, sub_defaults, f"{path}.{key}", errors)
    with merged.ignore_type():
      merged[key] = value
  return merged


def resolve_model_config(model_config: ConfigDict) -> ConfigDict:
  """Validates `model_config` and fills in defaults. Raises ValueError on unknown fields."""
  if "name" not in model_config:
    raise ValueError(f"model config has no 'name'; known recognizers: "
                     f"{', '.join(known('recognizer'))}")
  entry = lookup("recognizer", model_config.name, "model")
  errors: list[str] = []
  merged = _merge(model_config, entry.defaults(), "model", errors)
  if errors:
    raise ValueError("invalid model config:\n  " + "\n  ".join(errors))
  return merged


def build_model(model_config: ConfigDict) -> nn.Module:
  """`config.model` -> an unbound flax Module (see design.md 'Models')."""
  config = resolve_model_config(model_config)
  return _REGISTRY["recognizer"][config.name].builder(config)


def build_part(kind: str, model_config: ConfigDict, dtype: Any) -> Optional[nn.Module]:
  """The neck or head of a resolved model config (None for an empty neck)."""
  cfg = model_config[kind]
  if kind == "neck" and not cfg.name:
    return None
  return lookup(kind, cfg.name, f"model.{kind}").builder(cfg, model_config, dtype)


def build_backbone(backbone_config: ConfigDict, dtype: Any, **hooks) -> nn.Module:
  """A resolved backbone ConfigDict -> module; `hooks` are the block hook factories."""
  entry = lookup("backbone", backbone_config.name, "model.backbone")
  return entry.builder(backbone_config, dtype, **hooks)


def example_input_shape(model_config: ConfigDict) -> tuple[int, ...]:
  """An input shape that `module.init` accepts for this config (clips, [B, T, H, W, 3])."""
  config = resolve_model_config(model_config)
  entry = _REGISTRY["recognizer"][config.name]
  return tuple(entry.input_shape(config)) if entry.input_shape else (1, 2, 224, 224, 3)


def frozen_param_mask(model_config: ConfigDict, params: Any) -> Any:
  """Pytree of bools like `params`: True for parameters that must get no update at all.

  Frozen stages and partial-BN affines already get no gradient inside the model; the
  optimiser must also skip their weight decay, as upstream leaves them out of it. Each
  part's registered `frozen_rule` decides for the parameters under its name.
  """
  import jax  # pylint: disable=g-import-not-at-top
  config = resolve_model_config(model_config)
  rules = {}
  for kind in PART_FIELDS:
    cfg = config.get(kind)
    if cfg is not None and cfg.name:
      rule = lookup(kind, cfg.name, f"model.{kind}").frozen_rule
      if rule is not None:
        rules[kind] = (rule, cfg)

  def frozen(path, _):
    keys = tuple(getattr(k, "key", str(k)) for k in path)
    if keys[0] not in rules:
      return False
    rule, cfg = rules[keys[0]]
    return rule(keys[1:], cfg)

  return jax.tree_util.tree_map_with_path(frozen, params)
