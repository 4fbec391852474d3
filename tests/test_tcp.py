"""TCPNet: parity with a PyTorch TCP TSN-R50 reference, key layouts, GCP init, init values."""

import copy
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

MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # TCPNet's pipeline, 0..1 units
STD = np.array([0.229, 0.224, 0.225], np.float32)
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


# --- PyTorch reference. ------------------------------------------------------------------------
# Written from reference/tcpnet.md sections 1-3 (not upstream code); module names follow
# the upstream state_dict: base_model.{conv1, bn1, layerS.B.*, TCP.*}, new_fc.

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch_references import (add_resnet_trunk, calibrate_batchnorm,  # noqa: E402
                              resnet_trunk)

import converters  # noqa: E402
from converters import tcpnet as tcpnet_converter  # noqa: E402


class RefTSA(nn.Module):
  def __init__(self, c):
    super().__init__()
    self.conv_phi_1 = nn.Conv2d(c, c, 1)   # query, frame t-1
    self.conv_phi_2 = nn.Conv2d(c, c, 1)   # key, frame t-2
    self.conv_phi0 = nn.Conv2d(c, c, 1)    # value, frame t
    self.norm = nn.BatchNorm2d(c)

  def forward(self, x, t):
    n, c, h, w = x.shape
    frames = x.view(n // t, t, c, h, w)
    clamp = lambda s: [max(i - s, 0) for i in range(t)]
    x1 = frames[:, clamp(1)].reshape(n, c, h, w)
    x2 = frames[:, clamp(2)].reshape(n, c, h, w)
    q = self.conv_phi_1(x1).flatten(2)
    k = self.conv_phi_2(x2).flatten(2)
    v = self.conv_phi0(x).flatten(2)
    a = torch.softmax(torch.einsum("ncp,ncq->npq", q, k) * c ** -0.5, dim=-1)
    y = torch.einsum("npq,ncq->ncp", a, v).reshape(n, c, h, w)
    return x + self.norm(y)


class RefTCA(nn.Module):
  def __init__(self, c):
    super().__init__()
    self.g1 = nn.Conv2d(c, 4 * c, 1)
    self.g2 = nn.Conv2d(4 * c, c, 1)

  def forward(self, x, x_att, t):
    n, c = x.shape[:2]
    g = x.mean((2, 3)).view(n // t, t, c)
    d1 = g - g[:, [(i - 1) % t for i in range(t)]]
    d2 = 0.5 * (g - g[:, [(i - 2) % t for i in range(t)]])
    s = lambda d: torch.sigmoid(self.g2(torch.relu(self.g1(d.reshape(n, c, 1, 1)))))
    return x_att * (0.5 * (s(d1) + s(d2)))


class RefTCPAtt(nn.Module):
  def __init__(self, c, t):
    super().__init__()
    k = t // 2 + 1
    self.TCA = RefTCA(c)
    # The padding upstream computes on torch <= 1.9 (spec 7a), i.e. what it was trained with.
    self.conv_1d = nn.Conv3d(c, c, (k, 1, 1), padding=((k - 1) // 2, 0, 0),
                             padding_mode="circular")
    self.TSA = RefTSA(c)
    self.t = t

  def forward(self, x):
    n, c, h, w = x.shape
    x_att = self.TCA(x, self.TSA(x, self.t), self.t)
    z = x_att.view(n // self.t, self.t, c, h, w).permute(0, 2, 1, 3, 4)
    z = self.conv_1d(z).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)
    return torch.relu(z + x)


def ref_covariance(x):
  """(B, C, M) -> (B, C, C) with upstream's centring matrix I_hat (fine at test sizes)."""
  m = x.shape[2]
  i_hat = (torch.eye(m, dtype=x.dtype) - torch.ones(m, m, dtype=x.dtype) / m) / m
  return x @ i_hat @ x.transpose(1, 2)


def ref_sqrtm(s, iters=3):
  c = s.shape[1]
  eye3 = 3.0 * torch.eye(c, dtype=s.dtype).expand_as(s)
  tr = s.diagonal(dim1=1, dim2=2).sum(1).view(-1, 1, 1)
  a = s / (tr + 1e-5)
  zy = 0.5 * (eye3 - a)
  y, z = a @ zy, zy
  for _ in range(iters - 2):
    p = 0.5 * (eye3 - z @ y)
    y, z = y @ p, p @ z
  return 0.5 * y @ (eye3 - z @ y) * tr.sqrt()


class RefTCP(nn.Module):
  def __init__(self, t, dim_in=2048, dim=128, dim_inner=256):
    super().__init__()
    self.layer_reduce1 = nn.Conv2d(dim_in, dim_inner, 1, bias=False)
    self.layer_reduce_bn1 = nn.BatchNorm2d(dim_inner)
    self.layer_reduce2 = nn.Conv2d(dim_inner, dim, 1, bias=False)
    self.layer_reduce_bn2 = nn.BatchNorm2d(dim)
    self.TCP_att = RefTCPAtt(dim, t)
    self.t = t

  def forward(self, x):
    x = torch.relu(self.layer_reduce_bn1(self.layer_reduce1(x)))
    x = torch.relu(self.layer_reduce_bn2(self.layer_reduce2(x)))
    x = self.TCP_att(x)
    n, c, h, w = x.shape
    x = x.view(n // self.t, self.t, c, h, w).permute(0, 2, 1, 3, 4).reshape(n // self.t, c, -1)
    root = ref_sqrtm(ref_covariance(x))
    rows, cols = torch.triu_indices(c, c)
    return root[:, rows, cols].reshape(n // self.t, -1, 1, 1)


class RefBase(nn.Module):
  """ResNet-50 with layer4 stride 1, TCP inside, fc replaced by Dropout."""

  def __init__(self, t, dropout):
    super().__init__()
    add_resnet_trunk(self, 50, strides=(1, 2, 2, 1))
    self.TCP = RefTCP(t)
    self.fc = nn.Dropout(dropout)

  def forward(self, x):
    return self.fc(torch.flatten(self.TCP(resnet_trunk(self, x)), 1))


class RefTCPNet(nn.Module):
  """(B, T*3, H, W) normalised -> (B, K): one prediction per clip, no consensus."""

  def __init__(self, num_classes, t, dropout=0.5):
    super().__init__()
    self.base_model = RefBase(t, dropout)
    self.new_fc = nn.Linear(128 * 129 // 2, num_classes)

  def forward(self, x):
    return self.new_fc(self.base_model(x.view(-1, 3, x.shape[-2], x.shape[-1])))


def _randomize(model, x, seed):
  """Random weights everywhere (attention included: non-zero TSA gamma and conv_1d, so it
  is far from the identity), BN statistics measured on a batch and then perturbed."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, (nn.Conv2d, nn.Conv3d)):
        fan_in = m.weight[0].numel()
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
        if m.bias is not None:
          m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
      elif isinstance(m, nn.Conv1d):   # TEA's learned temporal shifts: random, near identity
        w = torch.randn(m.weight.shape, generator=g) * 0.4
        w[:, 0, 1] += 0.7
        m.weight.copy_(w)
      elif isinstance(m, nn.Linear):
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5)
        m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
      elif isinstance(m, nn.BatchNorm2d):
        m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
        m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
  return calibrate_batchnorm(model, x, g, (1.0, 2.0))


def _clip(b, t, size=SIZE, seed=0):
  return np.random.RandomState(seed).randint(0, 256, (b, t, size, size, 3)).astype(np.uint8)


def _to_torch_input(clip):
  x = (clip.astype(np.float32) / 255.0 - MEAN) / STD
  b, t, h, w, _ = x.shape
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3).reshape(b, t * 3, h, w)))


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
    x = _to_torch_input(clip)
    ref = _randomize(RefTCPNet(num_classes, t), x, seed=t)
    with torch.no_grad():   # logits of order 1, so that 1e-4 is a tight bound
      features = ref.base_model(x.view(-1, 3, x.shape[-2], x.shape[-1]))
      ref.new_fc.weight.mul_(1.0 / float((features @ ref.new_fc.weight.T).std()))
    sd = {"module." + k: v for k, v in ref.state_dict().items()}
    _REFS[t] = clip, ref, sd
  return _REFS[t]


@pytest.mark.parametrize("t", [8, 16])
def test_parity_tcp_tsn_r50(t):
  clip, ref, sd = _reference(t, b=2 if t == 8 else 1)
  assert len(sd) == 349   # reference/tcpnet.md 5.2 (num_batches_tracked included)
  config = _config(t, 11)
  variables = converters.convert("tcpnet", sd, config)
  module = build_model(config.model)
  with jax.default_matmul_precision("highest"):
    ours = np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, clip))
  with torch.no_grad():
    theirs = ref(_to_torch_input(clip)).numpy()
    # The attention must matter here, or the comparison would not test it.
    att = ref.base_model.TCP.TCP_att
    z = torch.rand(2 * t, 128, 4, 4)
    assert float((att(z) - z).abs().max()) > 0.1
  assert ours.shape == theirs.shape == (clip.shape[0], 11)
  assert theirs.std() > 0.1, "reference logits are degenerate; the test would prove nothing"
  diff = float(np.abs(ours - theirs).max())
  print(f"TCP TSN-R50 T={t} max abs logit diff: {diff:.3g}")
  assert diff <= 1e-4
  if t == 8:  # once: both float32 implementations sit this close to a float64 reference
    with torch.no_grad():
      exact = copy.deepcopy(ref).double()(_to_torch_input(clip).double()).numpy()
    diff64 = float(np.abs(ours - exact).max())
    print(f"  vs float64 reference {diff64:.3g}; torch float32 vs float64 "
          f"{float(np.abs(theirs - exact).max()):.3g}")
    assert diff64 <= 1e-4


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

from conftest import load_config  # noqa: E402


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
    ("tcp_tea_r50", 28_223_930, 10, 20.0),       # reference/tcpnet.md 6 (T=8, 400 classes)
    ("tcp_tsn_r152", 62_260_438, 50, 60.0),
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


# --- The other two backbones: whole-model parity in the upstream key layouts. ---------------

class RefTCPOnBackbone(nn.Module):
  """TCPNet with a TEA or pre-activation backbone: `base_model` is the backbone reference
  (its forward gives the layer4 features) with `TCP` and `fc` (dropout) attached, as
  upstream's TSN wrapper arranges them; (B, T*3, H, W) -> (B, K)."""

  def __init__(self, base, t, num_classes):
    super().__init__()
    base.TCP = RefTCP(t)
    base.fc = nn.Dropout(0.5)
    self.base_model = base
    self.new_fc = nn.Linear(8256, num_classes)

  def features(self, x):
    frames = self.base_model(x.view(-1, 3, x.shape[-2], x.shape[-1]))
    return torch.flatten(self.base_model.TCP(frames), 1)

  def forward(self, x):
    return self.new_fc(self.base_model.fc(self.features(x)))


@pytest.mark.parametrize("backbone,t,size,keys,num_params", [
    ("tea_res2net", 8, 64, 813, 28_223_930),      # reference/tcpnet.md 6
    ("tea_res2net", 16, 32, 813, 28_223_930 + 128 * 128 * 4),   # conv_1d kernel 9, not 5
    ("preact_resnet", 8, 64, 951, 62_260_438),    # reference/tcpnet.md 6 (R152)
])
def test_parity_tcp_tea_and_preact_r152(backbone, t, size, keys, num_params):
  """Whole TCP models with TCPNet's other two backbones, converted from the upstream
  layout (both key layouts), against our PyTorch references: logits within 1e-4.
  Backbone references: tests/test_tcp_backbones.py."""
  import test_tcp_backbones as refs  # pylint: disable=g-import-not-at-top
  raw = backbone == "preact_resnet"   # raw 0..255 pixels; bn_data normalises
  base = refs.RefTEARes2Net50(t) if backbone == "tea_res2net" else refs.RefPreActResNet(152)
  clip = _clip(1, t, size=size, seed=100 + t)
  x = (torch.from_numpy(np.ascontiguousarray(
      clip.astype(np.float32).transpose(0, 1, 4, 2, 3).reshape(1, t * 3, size, size)))
       if raw else _to_torch_input(clip))
  ref = _randomize(RefTCPOnBackbone(base, t, 11), x, seed=t)
  with torch.no_grad():   # logits of order 1, so that 1e-4 is a tight bound
    ref.new_fc.weight.mul_(1.0 / float((ref.features(x) @ ref.new_fc.weight.T).std()))
    theirs = ref(x).numpy()
    att = ref.base_model.TCP.TCP_att
    z = torch.rand(2 * t, 128, 2, 2)
    assert float((att(z) - z).abs().max()) > 0.1, "attention too close to the identity"
  sd = {"module." + k: v for k, v in ref.state_dict().items()}
  assert len(sd) == keys

  config = _config(t, 11)
  config.model.backbone = ml_collections.ConfigDict({"name": backbone})
  if raw:
    config.model.pixel_mean = config.model.pixel_std = None
  variables = converters.convert("tcpnet", sd, config)
  module = build_model(config.model)
  apply = lambda v, c: module.apply(v, c, train=False)  # noqa: E731
  with jax.default_matmul_precision("highest"):
    # Eager for R152: compiling 152 layers costs more than running them once.
    ours = np.asarray((apply if raw else jax.jit(apply))(variables, clip))
  assert ours.shape == theirs.shape == (1, 11)
  assert theirs.std() > 0.1, "reference logits are degenerate; the test would prove nothing"
  diff = float(np.abs(ours - theirs).max())
  print(f"TCP {backbone} T={t} max abs logit diff: {diff:.3g}")
  assert diff <= 1e-4

  # 400 classes as released: the upstream parameter count.
  fc_params = 8256 * (400 - 11) + (400 - 11)
  assert sum(int(np.prod(a.shape)) for a in jax.tree.leaves(variables["params"])) == (
      num_params - fc_params)
  old = {_old_key(k, "base_model.iSQRT.", sequential=True): v for k, v in sd.items()}
  assert "module.base_model.iSQRT.att_module.sp_att.conv_g.weight" in old
  jax.tree.map(np.testing.assert_array_equal, converters.convert("tcpnet", old, config), variables)
