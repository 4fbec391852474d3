"""config.xla_options (train step) and config.eval.xla_options (eval step): per-backend XLA
compiler options of the jitted steps."""

import re

import jax
import jax.numpy as jnp
import pytest

from conftest import DEFAULT_EMITTERS, load_config
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
def test_default_cpu_options_hand_elementwise_ops_to_ynnpack_in_training_only():
  defaults = config_defaults.trainer_defaults()
  train = xla_options.compiler_options(defaults.xla_options, "cpu")
  evaluation = xla_options.compiler_options(defaults.eval.xla_options, "cpu")
  dot_only = xla_options.compiler_options({"cpu": {YNN: "dot"}}, "cpu")
  assert _count_ynnpack_fusions(train) > 0
  assert _count_ynnpack_fusions(evaluation) == 0  # XLA's own fusions: faster inference
  assert _count_ynnpack_fusions(dot_only) == 0


def test_eval_step_compiles_with_the_eval_options():
  """A bad eval option fails the eval step's compile, naming it; a bad train option does
  not touch the eval step."""
  from vidjax.train import optim, trainer  # pylint: disable=import-outside-toplevel
  backend = jax.default_backend()

  def compile_eval(config):
    mesh, model, eval_fn = trainer._setup(config)
    shape = (8, config.data.num_frames, 32, 32, 3)
    batch = {"clip": jax.ShapeDtypeStruct(shape, jnp.uint8),
             "label": jax.ShapeDtypeStruct((8,), jnp.int32),
             "mask": jax.ShapeDtypeStruct((8,), jnp.bool_)}
    abstract = jax.eval_shape(lambda r: model.init(r, jnp.zeros(shape[1:], jnp.uint8)[None]),
                              jax.random.key(0))
    tx, _ = optim.build_optimizer(config.optim, abstract["params"], steps_per_epoch=4)
    state = jax.eval_shape(
        lambda r: trainer.create_train_state(config, model, tx, mesh, r)[0], jax.random.key(0))
    return eval_fn.lower(state, batch).compile()

  bad = {backend: {"xla_cpu_enable_fast_math": "not-a-bool"}}
  with pytest.raises(Exception, match="xla_cpu_enable_fast_math"):
    compile_eval(load_config("tsn_r50", "smoke", **{"eval.xla_options": bad}))
  compile_eval(load_config("tsn_r50", "smoke", xla_options=bad))


def test_unknown_fusion_type_is_an_error_naming_the_option():
  with pytest.raises(Exception, match=YNN):
    jax.jit(lambda x: x + 1, compiler_options=xla_options.compiler_options(
        {"cpu": {YNN: "dots"}}, "cpu")).lower(jnp.ones(3)).compile()


@pytest.mark.slow
@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU options")
def test_state_init_compiled_at_a_low_level_has_the_default_bits():
  """create_train_state compiles its one-off init at LLVM level 1 (a shorter compile);
  the initial state must be that of the default level, bit for bit."""
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  from vidjax.models import layers  # pylint: disable=import-outside-toplevel
  from vidjax.train import sharding, trainer  # pylint: disable=import-outside-toplevel

  class Tiny(nn.Module):  # the initialisers of the ResNets: He-normal convs, BN, Dense
    @nn.compact
    def __call__(self, clips, train=False):
      x = clips.astype(jnp.float32).reshape((-1,) + clips.shape[2:])
      x = layers.conv2d(64, 3, padding=1)(x)
      x = layers.conv2d(128, 1)(x)
      x = nn.BatchNorm(use_running_average=not train)(x)
      return nn.Dense(6)(x.mean((1, 2)))

  config = load_config("tsn_r50", "smoke")
  clip = jnp.zeros((1, config.data.num_frames, 32, 32, 3), jnp.uint8)
  tx = optax.sgd(0.1, momentum=0.9)
  mesh = sharding.make_mesh(config.mesh)
  state, _ = trainer.create_train_state(config, Tiny(), tx, mesh, jax.random.key(0))

  def init(rng, **jit_options):
    return jax.jit(lambda r: Tiny().init({"params": r, "dropout": r}, clip, train=False),
                   **jit_options)(rng)

  leaves = lambda tree: [np.asarray(x) for x in jax.tree.leaves(tree)]  # noqa: E731
  ours = leaves({"params": state.params, "batch_stats": state.batch_stats})
  # XLA's defaults: level 3 and the fusion emitters (the suite compiles at 0 with the
  # classic emitters: conftest.py).
  default = leaves(init(jax.random.key(0), compiler_options={
      "xla_backend_optimization_level": 3, **DEFAULT_EMITTERS}))
  assert len(ours) == len(default) == 8  # 2 BN statistics, 6 parameters
  assert all(np.array_equal(a, b) for a, b in zip(ours, default))
  # The comparison can see a change of level: level 0 rounds some kernel values apart.
  level0 = leaves(init(jax.random.key(0), compiler_options={
      "xla_backend_optimization_level": 0, **DEFAULT_EMITTERS}))
  assert not all(np.array_equal(a, b) for a, b in zip(ours, level0))

  # A train step (forward, gradient, update) too: level 1 gives level 3's bits.
  def step(level):
    def loss(p, stats):
      logits, _ = Tiny().apply({"params": p, "batch_stats": stats}, clip + 7, train=True,
                               mutable=["batch_stats"])
      return jnp.mean(jnp.square(logits))
    grad_step = lambda p, s: jax.tree.map(lambda a, g: a - 0.1 * g, p,  # noqa: E731
                                          jax.grad(loss)(p, s))
    return leaves(jax.jit(grad_step, compiler_options={
        "xla_backend_optimization_level": level, **DEFAULT_EMITTERS})(
            state.params, state.batch_stats))
  assert all(np.array_equal(a, b) for a, b in zip(step(1), step(3)))
