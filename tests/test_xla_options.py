"""config.xla_options: per-backend XLA compiler options of the jitted steps."""

import re

import jax
import jax.numpy as jnp
import pytest

from vidjax import config_defaults
from vidjax.train import xla_options

YNN = "xla_cpu_experimental_ynn_fusion_type"


def test_options_of_the_running_backend_only_with_enum_lists_spelled_out():
  opts = {"cpu": {YNN: "dot, eltwise", "xla_cpu_enable_fast_math": False},
          "gpu": {"xla_gpu_enable_latency_hiding_scheduler": True}}
  assert xla_options.compiler_options(opts, "cpu") == {
      YNN: "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_ELTWISE",
      "xla_cpu_enable_fast_math": False}
  assert xla_options.compiler_options(opts, "gpu") == {
      "xla_gpu_enable_latency_hiding_scheduler": True}
  assert xla_options.compiler_options(opts, "tpu") is None
  assert xla_options.compiler_options(None, "cpu") is None


def _count_ynnpack_fusions(options) -> int:
  f = lambda x: jnp.maximum(x * 2.0 + 1.0, 0.0)  # noqa: E731  elementwise only
  compiled = jax.jit(f, compiler_options=options).lower(jnp.ones((256, 256))).compile()
  # Fusions handed to YNNPACK are named ynn_fusion[.N] in the optimised HLO.
  return len(re.findall(r"%ynn_fusion(\.\d+)? = ", compiled.as_text()))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU options")
def test_default_cpu_options_hand_elementwise_ops_to_ynnpack():
  default = xla_options.compiler_options(config_defaults.trainer_defaults().xla_options, "cpu")
  dot_only = xla_options.compiler_options({"cpu": {YNN: "dot"}}, "cpu")
  assert _count_ynnpack_fusions(default) > 0
  assert _count_ynnpack_fusions(dot_only) == 0


def test_unknown_fusion_type_is_an_error_naming_the_option():
  with pytest.raises(Exception, match=YNN):
    jax.jit(lambda x: x + 1, compiler_options=xla_options.compiler_options(
        {"cpu": {YNN: "dots"}}, "cpu")).lower(jnp.ones(3)).compile()
