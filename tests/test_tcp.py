"""TCPNet: key layouts, GCP init and init values (parity: tests/test_parity.py)."""

import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from flax import traverse_util  # noqa: E402

from vidjax.models import build_model, default_config  # noqa: E402
from vidjax.models.heads.tcp import TCPAttention, TCPPooling  # noqa: E402

SIZE = 64


def tcp_model_config(t: int = 8) -> ml_collections.ConfigDict:
  """TCP TSN-R50 (layer4 stride 1) with T = t, from the registry's defaults."""
  cfg = default_config("recognizer", "recognizer2d")
  cfg.backbone.strides = (1, 2, 2, 1)
  cfg.head = default_config("head", "tcp")
  cfg.head.num_segments = t
  return cfg


def _flat(tree):
  return traverse_util.flatten_dict(tree, sep="/")


# --- Identity at init, without torch. ------------------------------------------------------

def test_attention_is_identity_at_init():
  t, dim = 8, 16
  x = jax.random.uniform(jax.random.key(1), (2 * t, 3, 3, dim))   # >= 0, as after ReLU
  att = TCPAttention(dim)
  variables = jax.jit(lambda k, x: att.init(k, x, t))(jax.random.key(0), x)
  params = variables["params"]
  # The init that makes it so (upstream): TSA's BN gamma 0, conv_1d all zeros; the TSA
  # and TCA convs themselves are random.
  np.testing.assert_array_equal(params["tsa"]["norm"]["scale"], 0.0)
  np.testing.assert_array_equal(params["conv_1d"]["kernel"], 0.0)
  assert float(jnp.abs(params["tsa"]["conv_phi_1"]["kernel"]).max()) > 0
  assert float(jnp.abs(params["tca"]["g1"]["kernel"]).max()) > 0
  run = jax.jit(lambda v, x: (att.apply(v, x, t),
                              att.apply(v, x, t, train=True, mutable=["batch_stats"])[0]))
  for out in run(variables, x):   # eval and train mode
    np.testing.assert_array_equal(out, x)


def test_head_output_size_and_input_channels_follow_backbone():
  head = TCPPooling(dim_reduce=24, dim=12)
  feats = jax.ShapeDtypeStruct((2 * 4, 3, 3, 512), jnp.float32)   # an R18 trunk
  out = jax.eval_shape(lambda x: head.init_with_output(jax.random.key(0), x, 4)[0], feats)
  assert out.shape == (2, 12 * 13 // 2) == (2, head.out_features)


def test_param_counts_match_upstream():
  """reference/tcpnet.md 5.2: 27,632,208 parameters; head 821,376 (attention 263,552);
  T=16 adds 65,536 (conv_1d kernel 9)."""
  def counts(t):
    cfg = tcp_model_config(t)
    m = build_model(cfg)
    v = jax.eval_shape(m.init, jax.random.key(0),
                       jax.ShapeDtypeStruct((1, t, 64, 64, 3), jnp.uint8))
    size = lambda tree: sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))
    p = v["params"]
    return (size(p), size(p["head"]) - size(p["head"]["fc"]), size(p["head"]["att"]),
            size(p["head"]["fc"]))
  assert counts(8) == (27_632_208, 821_376, 263_552, 3_302_800)
  assert counts(16)[0] == 27_632_208 + 65_536


def test_wrong_frame_count_is_an_error():
  m = build_model(tcp_model_config(8))
  with pytest.raises(ValueError, match="num_segments=8"):
    jax.eval_shape(m.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 4, 64, 64, 3), jnp.uint8))


# --- Key layouts on a PyTorch reference's state_dict (parity: tests/test_parity.py). --------

torch = pytest.importorskip("torch")
from conftest import load_config  # noqa: E402
from torch_references import tcpnet  # noqa: E402
from torch_references.common import random_clip  # noqa: E402

import converters  # noqa: E402
from converters import tcpnet as tcpnet_converter  # noqa: E402


def _clip(b, t, size=SIZE, seed=0):
  return random_clip(b, t, size, seed)


def _config(t, num_classes):
  config = ml_collections.ConfigDict()
  config.model = tcp_model_config(t)
  config.model.num_classes = num_classes
  return config


_REFS = {}


def _reference(t, b=2, num_classes=11):
  """(clip, randomised reference, its state_dict as DataParallel saves it); cached."""
  if t not in _REFS:
    clip = _clip(b, t, seed=t)
    config = load_config("tcp_tsn_r50", "16f" if t == 16 else "",
                         **{"model.num_classes": num_classes})
    ref = tcpnet.tcp(config, clip, seed=t)
    sd = {"module." + k: v for k, v in ref.state_dict().items()}
    _REFS[t] = clip, ref, sd
  return _REFS[t]


# Inverse of spec 5.3 for the R50 layout, to build an old-style checkpoint from a new one.
_TO_OLD = (
    ("TCP_att.TCA.g1.", "att_module.conv_1."),
    ("TCP_att.TCA.g2.", "att_module.conv_2."),
    ("TCP_att.TSA.conv_phi_1.", "att_module.sp_att.conv_theta."),
    ("TCP_att.TSA.conv_phi_2.", "att_module.sp_att.conv_phi."),
    ("TCP_att.TSA.conv_phi0.", "att_module.sp_att.conv_g."),
    ("TCP_att.TSA.", "att_module.sp_att."),
    ("TCP_att.", "att_module."),
)


def _old_key(key, prefix="base_model.layer4.iSQRT.", sequential=False):
  head = "module.base_model.TCP."
  if not key.startswith(head):
    return key
  tail = key[len(head):]
  for new, old in _TO_OLD:
    if tail.startswith(new):
      tail = old + tail[len(new):]
      break
  if sequential:
    tail = tail.replace("layer_reduce_bn1.", "layer_reduce1.1.").replace(
        "layer_reduce_bn2.", "layer_reduce2.1.")
    tail = tail.replace("layer_reduce1.weight", "layer_reduce1.0.weight").replace(
        "layer_reduce2.weight", "layer_reduce2.0.weight")
  return "module." + prefix + tail


def test_old_layout_converts_to_the_same_variables():
  _, _, sd = _reference(8)
  config = _config(8, 11)
  new = converters.convert("tcpnet", sd, config)
  old_sd = {_old_key(k): v for k, v in sd.items()}
  assert "module.base_model.layer4.iSQRT.att_module.sp_att.conv_theta.weight" in old_sd
  assert not any("TCP" in k for k in old_sd)
  old = converters.convert("tcpnet", old_sd, config)
  assert jax.tree.structure(old) == jax.tree.structure(new)
  jax.tree.map(np.testing.assert_array_equal, old, new)
  # The TEA / R152 old layout: TCP at base_model.iSQRT, reductions as Sequentials.
  seq_sd = {_old_key(k, "base_model.iSQRT.", sequential=True): v for k, v in sd.items()}
  assert "module.base_model.iSQRT.layer_reduce1.1.running_var" in seq_sd
  jax.tree.map(np.testing.assert_array_equal, converters.convert("tcpnet", seq_sd, config), new)


def test_layout_of_head_variables():
  _, _, sd = _reference(8)
  v = converters.convert("tcpnet", sd, _config(8, 11))
  w = sd["module.base_model.TCP.TCP_att.conv_1d.weight"].numpy()       # (O, I, k, 1, 1)
  np.testing.assert_array_equal(v["params"]["head"]["att"]["conv_1d"]["kernel"],
                                w.transpose(2, 3, 4, 1, 0))
  np.testing.assert_array_equal(v["params"]["head"]["att"]["tsa"]["conv_phi_2"]["bias"],
                                sd["module.base_model.TCP.TCP_att.TSA.conv_phi_2.bias"].numpy())
  np.testing.assert_array_equal(v["batch_stats"]["head"]["att"]["tsa"]["norm"]["mean"],
                                sd["module.base_model.TCP.TCP_att.TSA.norm.running_mean"].numpy())


@pytest.mark.slow  # builds and calibrates the 16-frame reference too
def test_strict_lists_every_offending_key():
  _, _, sd = _reference(8)
  sd = dict(sd)
  sd["module.base_model.TCP.TCP_att.extra.weight"] = torch.zeros(3)
  del sd["module.base_model.TCP.TCP_att.TSA.norm.running_var"]
  del sd["module.base_model.layer2.0.bn1.weight"]
  with pytest.raises(converters.ConversionError) as info:
    converters.convert("tcpnet", sd, _config(8, 11))
  msg = str(info.value)
  for fragment in ("TCP_att.extra.weight", "head/att/tsa/norm/var", "layer2_0/bn1/scale"):
    assert fragment in msg, (fragment, msg)
  assert "1 unused" in msg and "2 missing" in msg
  # A 16-frame checkpoint does not fit an 8-frame model (conv_1d kernel 9 vs 5).
  _, _, sd16 = _reference(16, b=1)
  with pytest.raises(converters.ConversionError, match="conv_1d.weight"):
    converters.convert("tcpnet", sd16, _config(8, 11))


def _gcp_state_dict(sd, sequential):
  """An ImageNet GCP checkpoint (spec 5.4) holding the weights of `sd`'s backbone and
  reduction layers, plus an ImageNet classifier."""
  gcp = {}
  for k, v in sd.items():
    k = k[len("module."):]
    if k.startswith("base_model.TCP.layer_reduce"):
      tail = k[len("base_model.TCP."):]
      if sequential:
        tail = _old_key("module.base_model.TCP." + tail, "iSQRT.", sequential=True)[7:]
      gcp["module." + tail] = v
    elif k.startswith("base_model.") and ".TCP." not in k:
      gcp["module." + k[len("base_model."):]] = v
  gcp["module.fc.weight"] = torch.zeros(1000, 128 * 129 // 2)
  gcp["module.fc.bias"] = torch.zeros(1000)
  return gcp


@pytest.mark.slow
def test_gcp_imagenet_init():
  _, _, sd = _reference(8)
  config = _config(8, 7)
  gcp = _gcp_state_dict(sd, sequential=False)
  v = _flat(converters.convert("tcpnet", gcp, config))
  full = _flat(converters.convert("tcpnet", sd, _config(8, 11)))
  for k, value in v.items():
    if k.startswith(("params/backbone/", "batch_stats/backbone/")) or (
        "/head/layer_reduce" in "/" + k):
      np.testing.assert_array_equal(value, full[k], err_msg=k)
  # Attention and classifier start as the model initialises them: the identity module.
  np.testing.assert_array_equal(v["params/head/att/tsa/norm/scale"], 0.0)
  np.testing.assert_array_equal(v["params/head/att/conv_1d/kernel"], 0.0)
  assert v["params/head/fc/kernel"].shape == (8256, 7)
  assert 0 < float(np.std(v["params/head/fc/kernel"])) < 0.002
  np.testing.assert_array_equal(v["params/head/fc/bias"], 0.0)
  # The Res2Net / R152 GCP layout (reductions under iSQRT, as Sequentials) gives the same.
  seq = _flat(converters.convert("tcpnet", _gcp_state_dict(sd, sequential=True), config))
  for k in v:
    np.testing.assert_array_equal(seq[k], v[k], err_msg=k)
  # Strict otherwise: only the ImageNet classifier may go unused.
  gcp["module.layer9.weight"] = torch.zeros(2)
  with pytest.raises(converters.ConversionError, match="layer9.weight"):
    converters.convert("tcpnet", gcp, config)


def test_old_key_rules():
  up = tcpnet_converter.upgrade_old_key
  assert up("base_model.iSQRT.layer_reduce2.0.weight") == "base_model.TCP.layer_reduce2.weight"
  assert up("base_model.iSQRT.layer_reduce1.1.bias") == "base_model.TCP.layer_reduce_bn1.bias"
  assert (up("base_model.layer4.iSQRT.att_module.sp_att.bn.weight")
          == "base_model.TCP.TCP_att.TSA.bn.weight")
  assert (up("base_model.layer4.iSQRT.att_module.conv_1d.bias")
          == "base_model.TCP.TCP_att.conv_1d.bias")
  assert up("base_model.layer4.2.conv1.weight") == "base_model.layer4.2.conv1.weight"


# --- Configs and training. ------------------------------------------------------------------

def test_recipe_param_groups():
  """reference/tcpnet.md 4.1 with lr_x_factor 5: attention and fc weight x5 (decayed),
  attention biases x5 (not decayed), TSA's BN x5 (decayed), fc bias x10, the rest x1."""
  from vidjax.train import optim  # pylint: disable=g-import-not-at-top
  config = load_config("tcp_tsn_r50")
  assert config.model.head.num_segments == config.data.num_frames == 8
  module = build_model(config.model)
  params = jax.eval_shape(module.init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 8, 64, 64, 3), jnp.uint8))["params"]
  rows = {line.split()[0]: line.split()[1:] for line in
          optim.param_group_table(params, config.optim).splitlines()[2:]}
  assert rows["att_norm"] == ["5", "0.0001", "2", "256"]
  assert rows["att_bias/no_decay"] == ["5", "0", "6", "1,152"]
  assert rows["att"] == ["5", "0.0001", "6", "262,144"]
  assert rows["fc_weight"] == ["5", "0.0001", "1", "3,302,400"]
  assert rows["fc_bias/no_decay"] == ["10", "0", "1", "400"]
  assert load_config("tcp_tsn_r50", "16f").model.head.num_segments == 16
  assert load_config("tcp_tsn_r50", "smoke", **{"data.num_frames": 6}).model.head.num_segments == 6


@pytest.mark.parametrize("name,num_params,lr_x,clip", [
    ("tcp_tsn_r50", None, 5, 20.0),
    pytest.param("tcp_tea_r50", 28_223_930, 10, 20.0,  # reference/tcpnet.md 6 (T=8, 400 classes)
                 marks=pytest.mark.slow),
    pytest.param("tcp_tsn_r152", 62_260_438, 50, 60.0, marks=pytest.mark.slow),
])
def test_every_tcpnet_config_variant_builds(name, num_params, lr_x, clip):
  """Each variant of the three TCPNet configs gives a model that initialises on clips of
  its own T; the K400 recipes have the upstream parameter count, lr_x and clipping; an
  unknown variant is an error that lists the known ones."""
  from vidjax.recipes import tcpnet  # pylint: disable=g-import-not-at-top
  arch = name[len("tcp_"):]
  for variant in tcpnet.variants(arch):
    config = load_config(name, variant)
    t = config.data.num_frames
    expected = 16 if variant.endswith("16f") else 4 if variant in ("demo", "smoke") else 8
    assert config.model.head.num_segments == t == expected, (name, variant, t)
    params = jax.eval_shape(build_model(config.model).init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, t, 32, 32, 3), jnp.uint8))["params"]
    count = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))
    if variant == "" and num_params is not None:
      assert count == num_params, (name, count)
    if variant in ("", "16f", "hmdb"):
      assert config.optim.clip_grad_norm == clip
      assert config.optim.param_groups[0]["lr_mult"] == lr_x
      assert (config.model.pixel_mean is None) == (arch == "tsn_r152")
  with pytest.raises(ValueError, match=f"configs/{name}.py: unknown variant part 'x'.*16f"):
    load_config(name, "x")


def _host_variables(module, *args, **static):
  """Variables from eval_shape, filled on the host (jit(init) of a ResNet is slow on CPU)."""
  abstract = jax.eval_shape(lambda *a: module.init(jax.random.key(0), *a, **static), *args)
  rng = np.random.RandomState(0)

  def fill(path, a):
    name = path[-1].key
    if name == "var":
      return jnp.asarray(rng.rand(*a.shape) + 0.5, a.dtype)
    scale = 0.1 if name in ("mean", "bias") else (2.0 / np.prod(a.shape[:-1])) ** 0.5
    return jnp.asarray(rng.randn(*a.shape) * scale + (name == "scale"), a.dtype)

  return jax.tree_util.tree_map_with_path(fill, abstract)


@pytest.mark.slow
def test_train_step_smoke():
  """One gradient step of the smoke model in train mode: finite gradients reaching the
  backbone, the reduction, the attention and the classifier; running statistics move."""
  config = load_config("tcp_tsn_r50", "smoke")
  module = build_model(config.model)
  clip = jnp.asarray(_clip(2, 4, size=32))
  variables = _host_variables(module, clip)
  labels = jnp.array([1, 4])

  def loss_fn(params):
    logits, updates = module.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                   clip, train=True, mutable=["batch_stats"],
                                   rngs={"dropout": jax.random.key(1)})
    onehot = jax.nn.one_hot(labels, logits.shape[-1])
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * onehot, -1)), updates

  grads, updates = jax.jit(jax.grad(loss_fn, has_aux=True))(variables["params"])
  grads = _flat(grads)
  assert all(np.isfinite(g).all() for g in grads.values())
  for k in ("head/fc/kernel", "head/att/conv_1d/kernel", "head/att/tsa/conv_phi0/kernel",
            "head/att/tca/g1/kernel", "head/layer_reduce1/kernel", "backbone/conv1/kernel"):
    assert float(np.abs(grads[k]).max()) > 0, k
  old, new = _flat(variables["batch_stats"]), _flat(updates["batch_stats"])
  for k in ("backbone/bn1/mean", "head/layer_reduce_bn2/var", "head/att/tsa/norm/mean"):
    assert not np.allclose(old[k], new[k]), k


def test_partial_bn_freezes_the_head_batchnorms():
  """Upstream's partial BN freezes every BatchNorm2d of base_model after the first, and
  the TCP head lives in base_model (the hmdb recipe)."""
  config = load_config("tcp_tsn_r50", "smoke", **{"model.backbone.partial_bn": True})
  assert build_model(config.model).head.freeze_bn
  head = TCPPooling(dim_reduce=16, dim=8, freeze_bn=True)
  x = jax.random.normal(jax.random.key(0), (2 * 4, 2, 2, 32))
  variables = _host_variables(head, x, num_segments=4)
  variables = {"params": variables["params"], "batch_stats": variables["batch_stats"]}

  def loss_fn(params):
    out, updates = head.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, 4,
                              train=True, mutable=["batch_stats"])
    return jnp.sum(out ** 2), updates

  grads, updates = jax.jit(jax.grad(loss_fn, has_aux=True))(variables["params"])
  jax.tree.map(np.testing.assert_array_equal, updates["batch_stats"], variables["batch_stats"])
  grads = _flat(grads)
  for k in ("layer_reduce_bn1/scale", "layer_reduce_bn2/bias", "att/tsa/norm/scale"):
    np.testing.assert_array_equal(grads[k], 0.0, err_msg=k)
  assert float(np.abs(grads["att/conv_1d/kernel"]).max()) > 0
