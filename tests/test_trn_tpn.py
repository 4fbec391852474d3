"""TRN and TPN (models/heads/trn.py, models/necks/tpn.py): the ResNet-50 zoo configs
against the upstream layout by name and shape; TRNHead's relation tuples (NumPy's seed
semantics at 8 frames, deterministic evaluation, fresh tuples in training); TPN's
training step against upstream's loss with its auxiliary head; the recipes. Eval-mode
logit parity: test_parity.py (trn_r18, tpn_tsm_r18, tpn_slowonly_r18)."""

import functools
import itertools
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import converters
from conftest import ROOT, load_config
from vidjax import models
from vidjax.models.heads.trn import relation_tuples
from vidjax.train import steps

torch = pytest.importorskip("torch")
sys.path.insert(0, f"{ROOT}/tests")
from torch_references import mmaction2 as ref  # noqa: E402  pylint: disable=g-import-not-at-top
from torch_references.common import random_clip, random_init, to_torch_input  # noqa: E402


@pytest.mark.parametrize("name,build,keys", [("trn_r50", ref.trn_recognizer, 348),
                                             ("tpn_tsm_r50", ref.tpn_recognizer, 379),
                                             ("tpn_slowonly_r50", ref.tpn_recognizer, 379)])
def test_r50_upstream_layout_converts_strictly(name, build, keys):
  """The full-size reference's state_dict (upstream names, the zoo's classes) converts
  strictly onto the zoo config's variables (shapes only, no forward pass); TPN's
  auxiliary head is among them."""
  config = load_config(name)
  with torch.device("meta"):
    meta = build(models.resolve_model_config(config.model)).state_dict()
  assert len(meta) == keys
  sd = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in meta.items()}
  params = converters.convert("mmaction2", sd, config)["params"]
  k = config.model.num_classes
  if name == "trn_r50":
    assert params["head"]["fc"]["kernel"].shape == (2048, 256)
    assert params["head"]["fc_fusion_scales_0_1"]["kernel"].shape == (8 * 256, 256)
    assert params["head"]["fc_fusion_scales_6_3"]["kernel"].shape == (256, k)
  else:
    assert params["neck"]["aux_head"]["fc"]["kernel"].shape == (2048, k)
    assert params["neck"]["temporal_modulation_0"]["conv"]["kernel"].shape == (
        3, 1, 1, 64, 1024)
    assert params["head"]["fc"]["kernel"].shape == (2048, k)


@pytest.fixture(scope="module")
def trn_at_8_frames():
  """TRNHead at 8 frames (ResNet-18's 512 channels): the reference with random weights,
  its converted variables, our head module and seeded frame features [16, 2, 2, 512]."""
  config = load_config("trn_r50", "smoke", **{"model.num_classes": 9,
                                              "model.head.num_segments": 8})
  theirs = ref.trn_recognizer(models.resolve_model_config(config.model))
  random_init(theirs, torch.Generator().manual_seed(0))
  theirs.eval()
  variables = converters.convert("mmaction2", theirs.state_dict(), config)
  feats = torch.randn(2 * 8, 512, 2, 2, generator=torch.Generator().manual_seed(1))
  head = models.build_model(config.model).head.clone(parent=None)
  return theirs.cls_head, {"params": variables["params"]["head"]}, head, feats


def test_trn_relations_are_numpys_after_seed_and_evaluation_is_deterministic(
    trn_at_8_frames):
  """At 8 frames (relations of 8 down to 2 frames): our tuples for relation_seed S are the
  indices upstream's np.random.choice calls draw after np.random.seed(S), and our head's
  logits match the reference's for three seeds, which give three different results; our
  draws leave NumPy's global RNG alone, and two evaluations with one seed (separately
  built and compiled) are identical."""
  torch_head, variables, head, feats = trn_at_8_frames
  x = feats.numpy().transpose(0, 2, 3, 1)
  outs = []
  for seed in (0, 1, 2):
    np.random.seed(seed)
    for s, ours in zip(range(7, 1, -1), relation_tuples(8, 3, seed)[1:]):
      combos = list(itertools.combinations(range(8), s))
      upstream = [combos[i] for i in np.random.choice(len(combos), 3, replace=False)]
      assert [tuple(c) for c in ours.tolist()] == upstream
    np.random.seed(1234)
    state = np.random.get_state()[1].copy()
    with jax.default_matmul_precision("highest"):
      ours = np.asarray(head.clone(relation_seed=seed).apply(variables, x, num_segments=8))
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    np.random.seed(seed)
    with torch.no_grad():
      theirs = torch_head(feats, 8).numpy()
    assert np.abs(ours - theirs).max() <= 1e-4
    outs.append(ours)
  assert min(np.abs(a - b).max() for a, b in itertools.combinations(outs, 2)) > 1e-3
  again = [np.asarray(jax.jit(functools.partial(
      head.clone(relation_seed=1).apply, num_segments=8))(variables, x)) for _ in range(2)]
  np.testing.assert_array_equal(again[0], again[1])
  # The seed is the config's `model.relation_seed` (design.md).
  config = load_config("trn_r50", "smoke", **{"model.relation_seed": 7})
  assert models.build_model(config.model).head.relation_seed == 7


def test_trn_training_draws_fresh_relations(trn_at_8_frames):
  """In training the tuples come from the 'dropout' rng: one key gives one result, other
  keys other tuples (dropout off, so only the tuples differ)."""
  _, variables, head, feats = trn_at_8_frames
  head = head.clone(dropout_rate=0.0)
  x = feats.numpy().transpose(0, 2, 3, 1)
  run = jax.jit(lambda k: head.apply(variables, x, num_segments=8, train=True,
                                     rngs={"dropout": k}))
  a, b, c = (np.asarray(run(jax.random.key(i))) for i in (0, 0, 1))
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).max() > 1e-3


def test_trn_and_tpn_refuse_inputs_they_are_not_built_for():
  """TRN's MLPs are built for model.head.num_segments frames; TPN needs the backbone's
  two stages."""
  config = load_config("trn_r50", "smoke")
  module = models.build_model(config.model)
  with pytest.raises(ValueError, match=r"model.head.num_segments=4 frames, got clips of 2"):
    jax.eval_shape(lambda: module.init(jax.random.key(0),
                                       jnp.zeros((1, 2, 32, 32, 3), jnp.uint8)))
  config = load_config("tpn_tsm_r50", "smoke", **{"model.backbone.out_stages": (4,)})
  module = models.build_model(config.model)
  with pytest.raises(ValueError, match="TPN takes 2 backbone stages.*out_stages"):
    jax.eval_shape(lambda: module.init(jax.random.key(0),
                                       jnp.zeros((1, 4, 32, 32, 3), jnp.uint8)))


@pytest.mark.slow
def test_tpn_train_step_loss_is_upstreams_with_the_auxiliary_head():
  """One train step of TPN-TSM (smoke: ResNet-18, dropout off) from the reference's
  weights: its loss is upstream's in training mode, cross-entropy + 0.5 x the auxiliary
  head's cross-entropy (the neck's BNs on batch statistics, 8 clips so that the
  pyramid's 1x1 maps give them enough values), and the auxiliary head gets its gradient.
  The backbone is frozen (frozen_stages 4: BN in eval mode, no gradient, as MMAction2's),
  which halves the step's compile."""
  config = load_config("tpn_tsm_r50", "smoke", **{"model.num_classes": 9,
                                                  "model.head.dropout_rate": 0.0,
                                                  "model.neck.aux_dropout_rate": 0.0,
                                                  "model.backbone.frozen_stages": 4})
  clips = random_clip(8, 4, 32, seed=90)
  labels = np.arange(8, dtype=np.int32) % 9
  theirs = ref.tpn(config, clips, 90)
  variables = converters.convert("mmaction2", theirs.state_dict(), config)
  theirs.train()
  theirs.backbone.eval()
  with torch.no_grad():
    logits = theirs(to_torch_input(clips))
    target = torch.from_numpy(labels).long()
    ce = torch.nn.functional.cross_entropy(logits, target)
    aux = torch.nn.functional.cross_entropy(theirs.neck.aux_logits, target)
  model = models.build_model(config.model)
  tx = optax.sgd(0.1)
  state = steps.TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                           batch_stats=variables["batch_stats"],
                           opt_state=tx.init(variables["params"]))
  with jax.default_matmul_precision("highest"):
    new, metrics, finite = jax.jit(functools.partial(
        steps.train_step, model=model, tx=tx, schedule=optax.constant_schedule(0.1)))(
            state, {"clip": clips, "label": labels}, jax.random.key(0))
  assert bool(finite) and float(aux) > 0.1
  assert float(metrics.loss.compute()) == pytest.approx(float(ce + 0.5 * aux), abs=1e-4)
  moved = new.params["neck"]["aux_head"]["fc"]["kernel"] - variables["params"]["neck"][
      "aux_head"]["fc"]["kernel"]
  assert float(jnp.abs(moved).max()) > 0


def test_recipes():
  trn = load_config("trn_r50")
  assert (trn.data.name, trn.model.num_classes, trn.model.head.num_segments) == (
      "somethingv1", 174, 8)
  assert (trn.optim.lr, trn.optim.lr_steps, trn.optim.epochs, trn.batch_size) == (
      0.002, (30, 45), 50.0, 128)
  assert trn.model.head.dropout_rate == 0.8 and trn.model.backbone.partial_bn
  assert load_config("trn_r50", "test2x3").eval.num_views == 6
  demo = load_config("trn_r50", "demo")
  assert demo.model.head.num_segments == demo.data.num_frames == 4
  assert not demo.model.backbone.partial_bn
  tsm = load_config("tpn_tsm_r50")
  assert tsm.model.shift.enabled and tuple(tsm.model.backbone.out_stages) == (3, 4)
  assert (tsm.model.neck.name, tsm.model.neck.aux_loss_weight, tsm.model.head.name) == (
      "tpn", 0.5, "i3d")
  assert (tsm.optim.lr, tsm.optim.nesterov, tsm.optim.weight_decay, tsm.optim.lr_steps,
          tsm.optim.clip_grad_norm, tsm.batch_size) == (0.01, True, 5e-4, (75, 125), 20.0, 64)
  slow = load_config("tpn_slowonly_r50", "test30")
  assert (slow.data.num_frames, slow.data.frame_interval, slow.eval.num_views) == (8, 8, 30)
  assert not slow.model.backbone.with_pool2 and slow.optim.warmup_epochs == 0.0
  smoke = load_config("tpn_slowonly_r50", "smoke")
  assert (smoke.model.backbone.depth, smoke.model.neck.out_channels) == (18, 256)
