"""Key renaming for TCPNet's two non-torchvision backbones (reference/tcpnet.md 5, 6).

Keys are relative to upstream's backbone module, i.e. with `module.` and `base_model.`
removed; results are dotted vidjax paths relative to the trunk (the caller prefixes
`backbone.`), in converters/common.py's convention `<flax module path>.<torch leaf>`.
Both functions return None for keys that are not backbone keys (e.g. `TCP.*`, `fc.*`).

Pre-activation ResNet (`resnet152`, vidjax `preact_resnet`):

    bn_data.*                            -> bn_data.*
    conv1.weight, bn1.*                  -> conv1.weight, bn1.*
    bn2.*   (final BN, 2048)             -> bn2.*
    layer{s}.{i}.{bn,conv}{1,2,3}.*      -> layer{s}_{i}.{bn,conv}{1,2,3}.*
    layer{s}.{i}.downsample.0.weight     -> layer{s}_{i}.downsample_conv.weight  (no BN)

TEA Res2Net (`tea50`, vidjax `tea_res2net`):

    conv1.weight, bn1.*                  -> conv1.weight, bn1.*
    layer{s}.{i}.conv{1,3}.weight, bn{1,3}.*       -> layer{s}_{i}.conv{1,3}.weight, ...
    layer{s}.{i}.me.{conv1,bn1,conv2,conv3,bn3}.*  -> layer{s}_{i}.me.*
    layer{s}.{i}.convs.{j}.weight        -> layer{s}_{i}.convs_{j}.weight
    layer{s}.{i}.bns.{j}.*               -> layer{s}_{i}.bns_{j}.*
    layer{s}.{i}.shifts.{j}.conv.weight  -> layer{s}_{i}.shifts_{j}.weight  (Conv1d (w,1,3) ->
                                            kernel [3, 1, w] by common's layout rule)
    layer{s}.{i}.downsample.{0,1}.*      -> layer{s}_{i}.downsample_{conv,bn}.*
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp

from converters.common import abstract_variables, assign, rename_by_rules, strip_module_prefix

_BN = r"(weight|bias|running_mean|running_var)"

_PREACT_RULES = (
    (re.compile(rf"^(bn_data|bn1|bn2)\.{_BN}$"), r"\1.\2"),
    (re.compile(r"^conv1\.weight$"), "conv1.weight"),
    (re.compile(rf"^layer(\d+)\.(\d+)\.(bn[123])\.{_BN}$"), r"layer\1_\2.\3.\4"),
    (re.compile(r"^layer(\d+)\.(\d+)\.(conv[123])\.weight$"), r"layer\1_\2.\3.weight"),
    (re.compile(r"^layer(\d+)\.(\d+)\.downsample\.0\.weight$"),
     r"layer\1_\2.downsample_conv.weight"),
)

_TEA_RULES = (
    (re.compile(rf"^bn1\.{_BN}$"), r"bn1.\1"),
    (re.compile(r"^conv1\.weight$"), "conv1.weight"),
    (re.compile(rf"^layer(\d+)\.(\d+)\.(bn[13])\.{_BN}$"), r"layer\1_\2.\3.\4"),
    (re.compile(r"^layer(\d+)\.(\d+)\.(conv[13])\.weight$"), r"layer\1_\2.\3.weight"),
    (re.compile(rf"^layer(\d+)\.(\d+)\.me\.(bn[13])\.{_BN}$"), r"layer\1_\2.me.\3.\4"),
    (re.compile(r"^layer(\d+)\.(\d+)\.me\.(conv[123])\.weight$"), r"layer\1_\2.me.\3.weight"),
    (re.compile(r"^layer(\d+)\.(\d+)\.convs\.(\d+)\.weight$"), r"layer\1_\2.convs_\3.weight"),
    (re.compile(rf"^layer(\d+)\.(\d+)\.bns\.(\d+)\.{_BN}$"), r"layer\1_\2.bns_\3.\4"),
    (re.compile(r"^layer(\d+)\.(\d+)\.shifts\.(\d+)\.conv\.weight$"),
     r"layer\1_\2.shifts_\3.weight"),
    (re.compile(r"^layer(\d+)\.(\d+)\.downsample\.0\.weight$"),
     r"layer\1_\2.downsample_conv.weight"),
    (re.compile(rf"^layer(\d+)\.(\d+)\.downsample\.1\.{_BN}$"), r"layer\1_\2.downsample_bn.\3"),
)


def rename_preact_key(key: str) -> Optional[str]:
  """Upstream pre-act ResNet key (no `base_model.`) -> trunk path, or None."""
  return rename_by_rules(_PREACT_RULES, key)


def rename_tea_key(key: str) -> Optional[str]:
  """Upstream TEA Res2Net key (no `base_model.`) -> trunk path, or None."""
  return rename_by_rules(_TEA_RULES, key)


BACKBONE_RENAMES: dict[str, Callable[[str], Optional[str]]] = {
    "preact_resnet": rename_preact_key,
    "tea_res2net": rename_tea_key,
}


def convert_backbone(state_dict: Mapping[str, Any], backbone: Any, example_input: Any,
                     name: str, num_segments: int = 1) -> dict:
  """Strictly converts a backbone-only state_dict (for tests and GCP-style inits).

  Args:
    state_dict: torch key -> tensor/array, keys relative to the backbone; `module.` and
      one `base_model.` prefix are stripped, `num_batches_tracked` is dropped.
    backbone: the flax trunk module (e.g. `PreActResNet(depth=50)`).
    example_input: array or ShapeDtypeStruct [N*T, H, W, 3] used to trace the shapes.
    name: 'preact_resnet' or 'tea_res2net' (picks the rename).
    num_segments: T for tracing (TEA needs N*T divisible by T).
  Returns:
    `{"params": ..., "batch_stats": ...}` for `backbone.apply`.
  Raises:
    converters.common.ConversionError listing every unused, missing or mismatched key.
  """
  rename = BACKBONE_RENAMES[name]

  def strip(key: str) -> str:
    key = strip_module_prefix(key)
    return key[len("base_model."):] if key.startswith("base_model.") else key

  stripped = {strip(k): v for k, v in state_dict.items()}
  spec = jax.ShapeDtypeStruct(tuple(example_input.shape), jnp.float32)
  abstract = abstract_variables(backbone, spec, train=False, num_segments=num_segments)
  return assign(stripped, abstract, rename)
