"""Parity of every zoo model with its PyTorch reference: one table, one test.

Each row builds the reference of tests/torch_references/<source>.py for a config (random
weights, BatchNorm statistics measured on the row's clip and then perturbed), converts its
state_dict as upstream saves it with `converters.convert(source, ...)`, runs both in eval
mode on the same seeded clip and bounds the max abs difference of the logits. A row with
`level="backbone"` compares the backbone's feature maps instead (converted with
converters/tcpnet_backbones.py), as max |ours - theirs| / max(1, max |theirs|).

A new model adds its reference module and a row. The README's zoo table is generated from
the rows and the measured differences are printed per row:

  python tests/test_parity.py --markdown   # README's "Model zoo" table
  python tests/test_parity.py --measure    # every row's max difference, a markdown table
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
for _path in (REPO, HERE):  # the checkout's converters/ and vidjax/, then tests/
  if _path not in sys.path:
    sys.path.insert(0, _path)

# conftest first: its settings (PyTorch on one thread) must precede torch's start.
from conftest import load_config  # noqa: E402

torch = pytest.importorskip("torch")
from torch_references import clip as clip_ref  # noqa: E402
from torch_references import tc_clip as tc_clip_ref  # noqa: E402
from torch_references import cost, gc, mmaction2, tcpnet, tcpnet_backbones, tsm  # noqa: E402
from torch_references.common import max_abs_diff, nchw, random_clip, to_torch_input  # noqa: E402

import converters  # noqa: E402
from converters.tcpnet_backbones import convert_backbone  # noqa: E402
from vidjax.models import build_model, resolve_model_config  # noqa: E402
from vidjax.models.registry import build_backbone  # noqa: E402

# Zoo configs with a learning test on the demo data (tests/test_learning.py,
# tests/test_learning3d.py).
LEARNING_TESTED = ("tsn_r50", "tsm_r50", "gc_tsn_r50", "tcp_tsn_r50", "trn_r50", "tin_r50",
                   "c2d_r50", "i3d_r50", "cost_r50", "slowfast_r50", "tanet_r50", "timesformer")


@dataclasses.dataclass(frozen=True)
class Row:
  """One parity comparison.

  name: the test id. model: the zoo model it verifies (README's "Model").
  config, variant, overrides: configs/CONFIG.py:VARIANT with dotted-path overrides; a row
    whose only override is model.num_classes verifies the zoo config itself (or one marked
    `zoo_config`, whose note says what it changed).
  source: the converter source, also the reference module's name.
  reference: builder (config, clip, seed) -> torch reference in eval mode.
  clip: (B, T, size) of the seeded uint8 clip (clip_seed); seed: the reference's weights.
  keys: the state_dict's entry count (None: unchecked); has_keys: entries it must hold.
  check: more assertions, check(Result).
  jit: False runs our model eagerly (compiling 152 layers costs more than running them).
  apply_kwargs: (ref, clip) -> more keyword arguments of our model's apply (TC-CLIP: the
    reference's discrete choices, forced), or None.
  note: README's "Verified" wording, when not plain parity.
  make_input: (*clip, seed=clip_seed) -> our model's input, for inputs that are not uint8
    clips (audio features); the reference then takes `ref.torch_input(input)`.
  """
  name: str
  model: str
  config: str
  source: str
  reference: Callable[..., Any]
  clip: tuple[int, int, int]
  clip_seed: int = 0
  seed: int = 0
  variant: str = ""
  overrides: dict = dataclasses.field(default_factory=dict)
  tolerance: float = 1e-4
  level: str = "model"
  keys: int | None = None
  has_keys: tuple[str, ...] = ()
  check: Callable[[Any], None] | None = None
  jit: bool = True
  slow: bool = False
  note: str = ""
  zoo_config: bool = False
  apply_kwargs: Callable[[Any, np.ndarray], dict] | None = None
  make_input: Callable[..., np.ndarray] | None = None

  @property
  def zoo(self) -> bool:
    return self.level == "model" and (
        self.zoo_config or set(self.overrides) <= {"model.num_classes"})

  def load_config(self) -> ml_collections.ConfigDict:
    return load_config(self.config, self.variant, **self.overrides)


@dataclasses.dataclass
class Result:
  """What one row computed: the reference, its state_dict, our variables and outputs."""
  row: Row
  config: ml_collections.ConfigDict
  clip: np.ndarray
  ref: Any
  state_dict: dict
  variables: dict
  ours: np.ndarray
  theirs: np.ndarray
  diff: float


# --- extra checks -------------------------------------------------------------------------

def _convert_and_run(config, state_dict, clip, source="tsm"):
  variables = converters.convert(source, state_dict, config)
  module = build_model(config.model)
  with jax.default_matmul_precision("highest"):
    return np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, clip))


def _shift_place_matters(r: Result):
  """The same weights as 'blockres' give other logits: the comparison sees where (and
  whether) frames are shifted."""
  config = copy.deepcopy(r.config)
  config.model.shift.place = "blockres"
  assert max_abs_diff(_convert_and_run(config, r.state_dict, r.clip), r.theirs) > 1e-3


def _mobilenet_layouts(r: Result):
  """TSM's shifted blocks are the residual ones with an expansion; the released checkpoint
  may keep its Linear as base_model.classifier (reference/tsm_gc.md 1.7)."""
  shifted = sorted(int(k.split(".")[3]) for k in r.state_dict if k.endswith("conv.0.net.weight"))
  assert shifted == [3, 5, 6, 8, 9, 10, 12, 13, 15, 16]
  sd = {k.replace("new_fc.", "base_model.classifier."): v for k, v in r.state_dict.items()}
  variables = converters.convert("tsm", sd, r.config)
  np.testing.assert_allclose(np.asarray(variables["params"]["head"]["fc"]["kernel"]),
                             r.ref.new_fc.weight.detach().numpy().T)


def _calibrators_matter(r: Result):
  """The calibrators change the logits far beyond the tolerance, or parity proves little."""
  gc.set_bypass(r.ref, True)
  with torch.no_grad():
    plain = r.ref(to_torch_input(r.clip)).numpy()
  gc.set_bypass(r.ref, False)
  assert max_abs_diff(plain, r.theirs) > 1e-2


def _attention_matters(r: Result):
  """TCP's attention is far from the identity here, or the comparison would not test it."""
  att = r.ref.base_model.TCP.TCP_att
  z = torch.rand(2 * att.t, 128, 4, 4, generator=torch.Generator().manual_seed(0))
  with torch.no_grad():
    assert float((att(z) - z).abs().max()) > 0.1


def _tcp_float64(r: Result):
  """Both float32 implementations sit this close to a float64 reference."""
  _attention_matters(r)
  _near_float64(r)


def _tcp_counts_and_old_layout(r: Result, num_params: int):
  """Upstream's parameter count with 400 classes (reference/tcpnet.md 6), and the old key
  layout (TCP at base_model.iSQRT, reductions as Sequentials) converts to the same."""
  from test_tcp import _old_key  # pylint: disable=import-outside-toplevel
  _attention_matters(r)
  fc_params = 8256 * (400 - 11) + (400 - 11)
  assert sum(int(np.prod(a.shape)) for a in jax.tree.leaves(r.variables["params"])) == (
      num_params - fc_params)
  old = {_old_key(k, "base_model.iSQRT.", sequential=True): v for k, v in r.state_dict.items()}
  assert "module.base_model.iSQRT.att_module.sp_att.conv_g.weight" in old
  jax.tree.map(np.testing.assert_array_equal, converters.convert("tcpnet", old, r.config),
               r.variables)


def _mmaction2_layouts(r: Result):
  """The same weights as MMAction2 saves them ({'state_dict', 'meta'}, with the 1.x data
  preprocessor's mean and std) convert to the same variables; a preprocessor that
  disagrees with the config is refused."""
  sd = {k[len("module."):]: v for k, v in r.state_dict.items()}
  mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1, 1)
  std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1, 1)
  checkpoint = {"state_dict": {**sd, "data_preprocessor.mean": mean,
                               "data_preprocessor.std": std},
                "meta": {"mmaction2_version": "1.2.0", "epoch": 100}}
  jax.tree.map(np.testing.assert_array_equal,
               converters.convert("mmaction2", checkpoint, r.config), r.variables)
  checkpoint["state_dict"]["data_preprocessor.std"] = std * 0 + 1
  with pytest.raises(converters.ConversionError, match="data_preprocessor.std"):
    converters.convert("mmaction2", checkpoint, r.config)


def _near_float64(r: Result):
  """Ours sits within the tolerance of a float64 run of the reference too (for rows whose
  float32 numerics are ill-conditioned: TCP's square root, Gaussian NL's softmax of raw
  products, where torch's own float32 sits some 5e-5 from float64)."""
  with torch.no_grad():
    exact = copy.deepcopy(r.ref).double()(to_torch_input(r.clip).double()).numpy()
  diff64 = max_abs_diff(r.ours, exact)
  print(f"  vs float64 reference {diff64:.3g}; torch float32 vs float64 "
        f"{max_abs_diff(r.theirs, exact):.3g}")
  assert diff64 <= 1e-4


def _c2d_pool(r: Result):
  """C2D's max-pool is unpadded: with ResNet3d's padded one (the I3D stem) the same
  weights give other logits."""
  config = copy.deepcopy(r.config)
  sd = {k: (v[:, :, None] if v.ndim == 4 else v) for k, v in r.state_dict.items()}
  config.model.backbone.name = "resnet3d"
  with config.ignore_type():
    config.model.backbone = resolve_model_config(config.model).backbone
  assert max_abs_diff(_convert_and_run(config, sd, r.clip, "mmaction2"), r.theirs) > 1e-3


# --- CLIP (source clip) -------------------------------------------------------------------

def _clip_prompts_and_scripted(r: Result):
  """Other class names (CamelCase, underscores, the vanilla prompt) give the reference's
  logits too; the same weights as a TorchScript archive with fp16 tensors convert to the
  same variables up to fp16 rounding."""
  import tempfile  # pylint: disable=import-outside-toplevel
  import warnings  # pylint: disable=import-outside-toplevel

  from converters.torch_io import load_torch_state_dict  # pylint: disable=import-outside-toplevel
  config = copy.deepcopy(r.config)
  config.model.update(class_names=("ApplyEyeMakeup", "Yo-Yo", "brush_hair"), num_classes=3,
                      prompt="{}")
  ref = clip_ref.clip(config, r.clip, r.row.seed)
  from vidjax.text import tokenize  # pylint: disable=import-outside-toplevel
  assert ref.prompt_tokens[1].tolist() == tokenize("Yo- Yo", 30)[0].tolist()  # upstream's split
  ours = _convert_and_run(config, {k: v for k, v in ref.state_dict().items()}, r.clip, "clip")
  with torch.no_grad():
    theirs = ref(to_torch_input(r.clip)).numpy()
  assert max_abs_diff(ours, theirs) <= 1e-4
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "ViT-tiny.pt")
    with warnings.catch_warnings():   # tracing's and TorchScript's deprecation notes
      warnings.simplefilter("ignore")
      traced = torch.jit.trace(copy.deepcopy(r.ref), to_torch_input(r.clip[:1]))
      torch.jit.save(traced.half(), path)   # OpenAI's archives hold fp16 weights
    scripted = load_torch_state_dict(path)
  assert scripted["visual.proj"].dtype == torch.float16
  variables = converters.convert("clip", scripted, r.config)
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(r.variables)):
    assert a.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-3)


# --- the table ----------------------------------------------------------------------------

def _classes(k: int) -> dict:
  return {"model.num_classes": k}


_GC_KEYS = 320 + 16 * 6   # one calibrator per block (reference/tsm_gc.md 2.3)

# `slow` rows take over ~15 s each on a 2-core CPU; the quick run (-m "not slow") keeps
# one ResNet-50 row per converter source, the ResNet-18 variants and MobileNetV2.
ZOO = [
    # TSM code base: reference/tsm_gc.md 1.2 gives 320 state_dict entries for a ResNet-50.
    Row("tsn_r50", "TSN-ResNet-50", "tsn_r50", "tsm", tsm.tsn, (2, 3, 64),
        overrides=_classes(11), keys=320, slow=True),
    Row("tsn_r18_fc_in_base_model", "TSN-ResNet-18, classifier as base_model.fc", "tsn_r50",
        "tsm", tsm.tsn, (1, 2, 64), clip_seed=3, seed=2,
        overrides={**_classes(5), "model.backbone.depth": 18, "model.head.dropout_rate": 0.0},
        has_keys=("module.base_model.fc.weight",)),
    Row("tsm_r50", "TSM-ResNet-50", "tsm_r50", "tsm", tsm.tsm, (2, 4, 32), seed=1,
        overrides=_classes(11), keys=320,
        has_keys=("module.base_model.layer1.0.conv1.net.weight",)),
    Row("tsm_r101", "TSM-ResNet-101", "tsm_r101", "tsm", tsm.tsm, (1, 4, 32), clip_seed=2,
        seed=2, overrides=_classes(7), slow=True,
        has_keys=("module.base_model.layer3.2.conv1.net.weight",
                  "module.base_model.layer3.1.conv1.weight")),
    Row("tsm_r18_block_place", "TSM-ResNet-18, shift before the block", "tsm_r50", "tsm",
        tsm.tsm, (2, 4, 32), clip_seed=3, seed=3,
        overrides={**_classes(6), "model.backbone.depth": 18, "model.shift.place": "block"},
        has_keys=("module.base_model.layer1.0.net.conv1.weight",), check=_shift_place_matters,
        slow=True),
    Row("nl_tsm_r50", "NL-TSM-ResNet-50", "nl_tsm_r50", "tsm", tsm.tsm, (2, 4, 64),
        clip_seed=4, seed=4, overrides=_classes(9), keys=385, slow=True,
        has_keys=("module.base_model.layer2.0.nl.W.1.running_var",
                  "module.base_model.layer2.0.block.conv1.net.weight")),
    *(Row(f"nl_{mode}_tsm_r18", f"NL ({mode}) TSM-ResNet-18", "nl_tsm_r50", "tsm", tsm.tsm,
          (2, 4, 32), clip_seed=5, seed=5,
          overrides={**_classes(5), "model.backbone.depth": 18, "model.non_local.mode": mode,
                     # layer2: 4x4 maps, 2x2 after pooling
                     "model.non_local.positions": ((0, 0), (1, 0), (0, 0), (0, 0))})
      for mode in ("gaussian", "dot_product")),
    Row("tsm_mobilenetv2", "TSM-MobileNetV2", "tsm_mobilenetv2", "tsm", tsm.tsm, (2, 4, 32),
        clip_seed=6, seed=6, overrides=_classes(8), check=_mobilenet_layouts),
    # GC code base: 704 entries = 320 + 16 blocks x 4 calibrators x 6 (reference/tsm_gc.md 2.3).
    Row("gc_tsn_r50", "GC-TSN-ResNet-50", "gc_tsn_r50", "gc", gc.gc, (2, 4, 32), seed=1,
        overrides=_classes(7), keys=704, check=_calibrators_matter, slow=True),
    Row("gc_tsm_r50", "GC-TSM-ResNet-50", "gc_tsm_r50", "gc", gc.gc, (2, 4, 32), clip_seed=2,
        seed=2, overrides=_classes(7), keys=704, check=_calibrators_matter, slow=True),
    # ECal-L on 1/16 of the channels (the 'r = 16' reading): the rest pass unchanged.
    Row("ecal_l_tsn_r50_r16", "ECal-L-TSN-ResNet-50", "ecal_l_tsn_r50", "gc", gc.gc,
        (2, 4, 32), clip_seed=3, seed=3, variant="r16", overrides=_classes(7), keys=_GC_KEYS,
        check=_calibrators_matter),
    Row("ecal_t_tsm_r50", "ECal-T-TSM-ResNet-50", "ecal_t_tsm_r50", "gc", gc.gc, (2, 4, 32),
        clip_seed=4, seed=4, overrides=_classes(7), keys=_GC_KEYS, check=_calibrators_matter,
        note="parity with our reconstruction", slow=True),
    # TCPNet code base: 349 entries (reference/tcpnet.md 5.2, num_batches_tracked included).
    Row("tcp_tsn_r50_t8", "TCP-TSN-ResNet-50", "tcp_tsn_r50", "tcpnet", tcpnet.tcp,
        (2, 8, 64), clip_seed=8, seed=8, overrides=_classes(11), keys=349, check=_tcp_float64),
    Row("tcp_tsn_r50_t16", "TCP-TSN-ResNet-50", "tcp_tsn_r50", "tcpnet", tcpnet.tcp,
        (1, 16, 64), clip_seed=16, seed=16, variant="16f", overrides=_classes(11), keys=349,
        check=_attention_matters, slow=True),
    Row("tcp_tea_r50_t8", "TCP-TEA-Res2Net-50", "tcp_tea_r50", "tcpnet", tcpnet.tcp,
        (1, 8, 64), clip_seed=108, seed=8, overrides=_classes(11), keys=813, slow=True,
        check=functools.partial(_tcp_counts_and_old_layout, num_params=28_223_930)),
    Row("tcp_tea_r50_t16", "TCP-TEA-Res2Net-50", "tcp_tea_r50", "tcpnet", tcpnet.tcp,
        (1, 16, 32), clip_seed=116, seed=16, variant="16f", overrides=_classes(11), keys=813,
        slow=True,   # conv_1d kernel 9, not 5
        check=functools.partial(_tcp_counts_and_old_layout,
                                num_params=28_223_930 + 128 * 128 * 4)),
    Row("tcp_tsn_r152", "TCP-TSN-PreAct-ResNet-152", "tcp_tsn_r152", "tcpnet", tcpnet.tcp,
        (1, 8, 64), clip_seed=108, seed=8, overrides=_classes(11), keys=951, jit=False,
        slow=True, check=functools.partial(_tcp_counts_and_old_layout, num_params=62_260_438)),
    # TCPNet's backbones alone, feature maps (the TCP rows above use them at full depth).
    Row("preact_r50_backbone", "pre-activation ResNet-50 (backbone)", "tcp_tsn_r152",
        "tcpnet", tcpnet_backbones.backbone, (2, 1, 64), seed=1, level="backbone",
        overrides={"model.backbone.depth": 50}),
    # T = 8 with two clips in the batch: ME and the shifts must not mix clips.
    Row("tea_r50_t8_backbone", "TEA-Res2Net-50 (backbone)", "tcp_tea_r50", "tcpnet",
        tcpnet_backbones.backbone, (2, 8, 64), clip_seed=8, seed=9, level="backbone",
        keys=813 - 29 - 2, slow=True),
    # MMAction2: 320 state_dict entries for a ResNet3d-50 + I3DHead, 380 with I3D's five
    # non-local blocks, 360 in gaussian mode (reference/mmaction2_cost.md 1, 1a). Quick
    # run: I3D-R50 and the smoke (ResNet-18) members; the other R50 rows are slow.
    Row("i3d_r50", "I3D-ResNet-50", "i3d_r50", "mmaction2", mmaction2.recognizer, (2, 8, 64),
        clip_seed=20, seed=20, overrides=_classes(9), keys=320,
        has_keys=("module.backbone.layer1.0.conv1.conv.weight",
                  "module.cls_head.fc_cls.weight"), check=_mmaction2_layouts),
    Row("i3d_r50_heavy", "I3D-ResNet-50 heavy", "i3d_r50", "mmaction2", mmaction2.recognizer,
        (1, 8, 64), clip_seed=21, seed=21, variant="heavy", overrides=_classes(9), keys=320,
        slow=True),
    *(Row(f"i3d_r50_nl_{mode}", f"I3D-ResNet-50 NL ({mode})", "i3d_r50", "mmaction2",
          mmaction2.recognizer, (2, 8, 64), clip_seed=22 + i, seed=22 + i,
          variant=f"nl_{mode}", overrides=_classes(9), keys=keys, slow=True,
          has_keys=("module.backbone.layer2.1.non_local_block.conv_out.bn.running_var",),
          check=_near_float64 if mode == "gaussian" else None)
      for i, (mode, keys) in enumerate((("embedded_gaussian", 380), ("gaussian", 360),
                                        ("dot_product", 380)))),
    # ResNet3d-18, 3x3x3 basic blocks, dot-product NL in layer2 and layer3 (block 1); 64
    # px: at 32 px layer4's BN statistics would come from 2 values per channel.
    Row("i3d_r18_nl_dot_product", "I3D-ResNet-18 NL (dot_product)", "i3d_r50", "mmaction2",
        mmaction2.recognizer, (2, 8, 64), clip_seed=30, seed=30,
        variant="nl_dot_product_smoke", overrides=_classes(9),
        has_keys=("module.backbone.layer3.1.non_local_block.phi.0.conv.bias",), slow=True),
    Row("c2d_r50", "C2D-ResNet-50", "c2d_r50", "mmaction2", mmaction2.recognizer, (2, 8, 64),
        clip_seed=25, seed=25, overrides=_classes(9), keys=320, slow=True),
    Row("c2d_r18", "C2D-ResNet-18", "c2d_r50", "mmaction2", mmaction2.recognizer, (2, 8, 64),
        clip_seed=31, seed=31, variant="smoke", overrides=_classes(9), check=_c2d_pool, slow=True),
    Row("c2d_r50_nopool", "C2D-ResNet-50 nopool", "c2d_r50", "mmaction2",
        mmaction2.recognizer, (2, 8, 64), clip_seed=26, seed=26, variant="nopool",
        overrides=_classes(9), keys=320, slow=True),
    Row("c2d_r18_nopool", "C2D-ResNet-18 nopool", "c2d_r50", "mmaction2",
        mmaction2.recognizer, (2, 8, 32), clip_seed=32, seed=32, variant="nopool_smoke",
        overrides=_classes(9), slow=True),
    Row("slowonly_r50", "SlowOnly-ResNet-50", "slowonly_r50", "mmaction2",
        mmaction2.recognizer, (2, 4, 64), clip_seed=27, seed=27, overrides=_classes(9),
        keys=320, slow=True),
    Row("slowonly_r101_8x8", "SlowOnly-ResNet-101 8x8", "slowonly_r50", "mmaction2",
        mmaction2.recognizer, (1, 8, 64), clip_seed=28, seed=28, variant="r101_8x8",
        overrides=_classes(9), slow=True),
    Row("slowonly_r50_nl", "SlowOnly-ResNet-50 NL", "slowonly_r50", "mmaction2",
        mmaction2.recognizer, (2, 4, 64), clip_seed=29, seed=29, variant="nl",
        overrides=_classes(9), keys=380, slow=True),
    # ResNet3d-18 SlowOnly with scaled embedded-Gaussian NL in layer2 and layer3 (block 0),
    # not sub-sampled (keys `g.conv`, `phi.conv`).
    Row("slowonly_r18_nl", "SlowOnly-ResNet-18 NL", "slowonly_r50", "mmaction2",
        mmaction2.recognizer, (2, 4, 32), clip_seed=33, seed=33, variant="nl_smoke",
        overrides={**_classes(9), "model.backbone.non_local_cfg.sub_sample": False},
        has_keys=("module.backbone.layer2.0.non_local_block.g.conv.weight",)),
    # Options no zoo row uses (CSN's): 3x3x3 inflation and temporal strides in layer2/3.
    Row("resnet3d_r50_3x3x3_temporal_strides", "ResNet3d-50 3x3x3, temporal strides",
        "i3d_r50", "mmaction2", mmaction2.recognizer, (2, 8, 64), clip_seed=34, seed=34,
        variant="heavy", overrides={**_classes(9), "model.backbone.inflate_style": "3x3x3",
                                    "model.backbone.temporal_strides": (1, 2, 2, 1)},
        keys=320, slow=True),
    # OpenAI CLIP (source clip): the ViFi-CLIP video classifier as zoo-configured (ViT-B/16
    # at 224 px, CLIP's full 12-layer text tower; 302 state_dict entries, OpenAI's layout)
    # on one clip of 2 frames and the config's 6 class names, and at toy width (the smoke
    # variant: 2 layers of 64 in both towers) with the prompt variants and the TorchScript
    # fp16 archive. test_clip.py: the full model's names, shapes and parameter count.
    Row("clip_vitb16", "CLIP ViT-B/16 (ViFi-CLIP)", "clip_vitb16", "clip", clip_ref.clip,
        (1, 2, 224), clip_seed=45, seed=45, overrides=_classes(6), keys=12 * 24 + 14,
        has_keys=("module.visual.transformer.resblocks.11.attn.in_proj_weight",
                  "module.transformer.resblocks.11.mlp.c_proj.weight"),
        slow=True, note="parity of ViT-B/16 at 224 px (2 frames) and at toy width"),
    Row("clip_vitb16_tiny", "CLIP ViT-B/16 (ViFi-CLIP)", "clip_vitb16", "clip", clip_ref.clip,
        (2, 4, 32), clip_seed=40, seed=40, variant="smoke", overrides=_classes(6),
        keys=12 * 4 + 14, has_keys=("module.visual.transformer.resblocks.1.attn.in_proj_weight",
                                        "module.token_embedding.weight"),
        check=_clip_prompts_and_scripted),
    # CoST's release (reference/mmaction2_cost.md 19): 320 state_dict entries for its C2D
    # and I3D, CoST(a) 328 (+8 alpha), CoST(b) 336 (+16 fc weights). Quick run: CoST(b).
    # R101-32f at depth 50 (its conv1 (5, 7, 7) / 2 and (2, 3, 3) stem pool; 7 CoST
    # blocks: 334 entries), at 48 px: at 32 px one clip's layer4 BN statistics come from
    # 2 values per channel; its full depth: tests/test_cost.py.
    Row("cost_b_r50", "CoST(b)-ResNet-50", "cost_r50", "cost", cost.recognizer, (2, 8, 32),
        clip_seed=40, seed=40, overrides=_classes(9), keys=336,
        has_keys=("module.backbone.layer1.1.conv2.conv.fc2.weight",)),
    Row("cost_a_r50", "CoST(a)-ResNet-50", "cost_r50", "cost", cost.recognizer, (2, 8, 32),
        clip_seed=41, seed=41, variant="a", overrides=_classes(9), keys=328, slow=True,
        has_keys=("module.backbone.layer4.2.conv2.conv.alpha",)),
    Row("cost_c2d_r50", "CoST's C2D-ResNet-50", "cost_r50", "cost", cost.recognizer,
        (2, 8, 32), clip_seed=42, seed=42, variant="c2d", overrides=_classes(9), keys=320,
        slow=True),
    Row("cost_i3d_r50", "CoST's I3D-ResNet-50", "cost_r50", "cost", cost.recognizer,
        (2, 8, 32), clip_seed=43, seed=43, variant="i3d", overrides=_classes(9), keys=320,
        slow=True),
    Row("cost_b_r101_32f_at_r50", "CoST(b)-ResNet-101 32f, at depth 50", "cost_r50", "cost",
        cost.recognizer, (2, 8, 48), clip_seed=44, seed=44, variant="r101_32f",
        overrides={**_classes(9), "model.backbone.depth": 50,
                   "model.backbone.inflate": ((0, 1, 0), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0),
                                              (0, 1, 0))}, keys=334, slow=True),
]

# --- CSN and R(2+1)D (reference/mmaction2_cost.md 5, 6): ir-CSN-50 as zoo-configured (320
# entries: conv2 becomes conv2.0), the ip bottleneck at depth 50 and a quarter of the
# widths (416: one more ConvModule per block); R(2+1)D-34 at full depth (434). The
# 152-layer CSNs' names, shapes and parameter counts: tests/test_csn_r2plus1d.py.
ZOO += [
    Row("ircsn_r50", "CSN (ir-CSN-152, ip-CSN-152, ir-CSN-50)", "csn_r152", "mmaction2",
        mmaction2.csn_recognizer, (2, 8, 64), clip_seed=40, seed=40, variant="r50",
        overrides=_classes(9), keys=320,
        has_keys=("module.backbone.layer3.5.conv2.0.conv.weight",),
        note="parity of ir-CSN-50 and of ip-CSN at depth 50; 152-layer names and shapes"),
    Row("ipcsn_r50_smoke", "ip-CSN (depth 50, 16 base channels)", "csn_r152", "mmaction2",
        mmaction2.csn_recognizer, (2, 8, 64), clip_seed=41, seed=41, variant="ip_smoke",
        overrides=_classes(9), keys=416,
        has_keys=("module.backbone.layer2.0.conv2.1.bn.running_var",)),
    Row("r2plus1d_r34", "R(2+1)D-34", "r2plus1d_r34", "mmaction2",
        mmaction2.r2plus1d_recognizer, (2, 8, 64), clip_seed=42, seed=42,
        overrides=_classes(9), keys=434, slow=True,
        has_keys=("module.backbone.conv1.conv.conv_s.weight",
                  "module.backbone.layer2.0.downsample.conv.bn_s.running_var")),
    # --- SlowFast (reference/mmaction2_cost.md 4): 642 entries for R50 pathways = 2 x 318
    # + 4 lateral convs + fc_cls. R101 8x8: its structure in test_slowfast.py.
    Row("slowfast_r50", "SlowFast-ResNet-50", "slowfast_r50", "mmaction2",
        mmaction2.slowfast, (1, 16, 64), clip_seed=40, seed=40, overrides=_classes(9),
        keys=642, slow=True,
        has_keys=("module.backbone.slow_path.layer3_lateral.conv.weight",
                  "module.backbone.fast_path.layer4.2.conv3.bn.running_var")),
    # ResNet3d-18 pathways (lateral widths of expansion-1 stages) on two clips, with the
    # 8x8 models' rates (tau 4, alpha 4, fusion kernel 7) and the options no zoo row
    # uses: BN + ReLU after each lateral conv, lateral_infl 1.
    Row("slowfast_r18_8x8_lateral_norm", "SlowFast-ResNet-18 8x8, lateral BN",
        "slowfast_r50", "mmaction2", mmaction2.slowfast, (2, 8, 64), clip_seed=42, seed=42,
        variant="smoke",
        overrides={**_classes(9), "model.backbone.resample_rate": 4,
                   "model.backbone.speed_ratio": 4,
                   "model.backbone.slow_pathway.fusion_kernel": 7,
                   "model.backbone.slow_pathway.lateral_norm": True,
                   "model.backbone.slow_pathway.lateral_infl": 1},
        has_keys=("module.backbone.slow_path.conv1_lateral.bn.running_var",)),
]


# --- TC-CLIP (source tc_clip, reference/tcclip.md 2.6): the TC blocks' discrete choices are
# near-ties for float rounding, so ours are forced to the reference's, and each forced
# choice must score within a hair of our own best one. Full size (the zoo config: 196
# patches, 58 seeds a frame, 96 context tokens) at T=2: one merge step of 20 per layer.
# Toy widths (the smoke variant: 16 patches, 4 seeds a frame, 6 context tokens): T=4
# merges in 3 steps ([4, 4, 2]), T=2 in one.

def _tc_clip_forced(ref, clip) -> dict:
  with torch.no_grad():
    ref(to_torch_input(clip))
  return {"decisions": tc_clip_ref.jax_decisions(ref)}


def _tc_clip_margins(r: Result):
  """Each forced choice is within 1e-5 of our own best at that point, and other choices
  give other logits (forcing is effective)."""
  from vidjax.models.clip.tc_vision import decision_shortfalls  # pylint: disable=import-outside-toplevel
  module = build_model(r.config.model)
  forced = tc_clip_ref.jax_decisions(r.ref)   # its last forward was on r.clip
  with jax.default_matmul_precision("highest"):
    apply = jax.jit(lambda v, x, d: module.apply(v, x, train=False, decisions=d,
                                                 mutable=["intermediates"]))
    _, state = apply(r.variables, r.clip, forced)
    shortfalls = decision_shortfalls(state["intermediates"]["visual"])
    print(f"  forced-choice shortfalls per block: {shortfalls}")
    assert len(shortfalls) == r.config.model.vision.layers
    assert max(shortfalls.values()) <= 1e-5
    other = copy.deepcopy(forced)
    other["resblocks_0"]["seeds"] = (other["resblocks_0"]["seeds"][0][..., ::-1].copy(),)
    moved, state = apply(r.variables, r.clip, other)
  assert max_abs_diff(np.asarray(moved), r.theirs) > 1e-3
  assert decision_shortfalls(state["intermediates"]["visual"])["resblocks_0"] > 1e-6


def _tc_clip_choices(r: Result):
  """The margins above; TC-CLIP's layout without CLIP's token embedding and with another
  context length is refused."""
  _tc_clip_margins(r)
  sd = {k: v for k, v in r.state_dict.items() if "token_embedding" not in k}
  with pytest.raises(converters.ConversionError, match="--clip_checkpoint"):
    converters.convert("tc_clip", sd, r.config)
  config = copy.deepcopy(r.config)
  config.model.context_length = 77
  with pytest.raises(converters.ConversionError, match="prompts of 30 tokens, but "
                     "model.context_length=77"):
    converters.convert("tc_clip", r.state_dict, config)


_TC_CLIP_NOTE = ("parity with the reference's discrete choices forced, each within 1e-5 of "
                 "our own")
ZOO += [
    # The zoo config (zero_shot) at full size on one clip of 2 frames with its 6 class
    # names, in float32: the config computes in bfloat16 (upstream's AMP), which moves the
    # logits far beyond 1e-4.
    Row("tc_clip", "TC-CLIP", "tc_clip", "tc_clip", tc_clip_ref.tc_clip, (1, 2, 224),
        clip_seed=52, seed=52, overrides={**_classes(6), "model.dtype": "float32"},
        zoo_config=True,
        keys=16 * 12 + 11 + 8 + 12 * 12 + 4 + 14 + 4 + 1,   # upstream's 377 + token_embedding
        has_keys=("module.image_encoder.transformer.resblocks.11.attn.local_global_bias_table",
                  "module.text_encoder.transformer.resblocks.11.mlp.c_fc.weight"),
        apply_kwargs=_tc_clip_forced, check=_tc_clip_margins, slow=True,
        note=_TC_CLIP_NOTE + ", at ViT-B/16 224 px (2 frames, float32) and at toy width"),
    Row("tc_clip_tiny", "TC-CLIP", "tc_clip", "tc_clip", tc_clip_ref.tc_clip, (2, 4, 32),
        clip_seed=50, seed=50, variant="smoke", overrides=_classes(6),
        keys=16 * 2 + 1 + 8 + 12 * 2 + 4 + 14 + 4 + 1,   # 377 at 12 layers, + CLIP token_embedding
        has_keys=("module.image_encoder.transformer.resblocks.1.attn.local_global_bias_table",
                  "module.prompt_learner.token_suffix",
                  "module.text_encoder.prompt_generation_layer.0.ln_1_kv.weight"),
        apply_kwargs=_tc_clip_forced, check=_tc_clip_choices, note=_TC_CLIP_NOTE),
    Row("tc_clip_tiny_t2", "TC-CLIP, 2 frames", "tc_clip", "tc_clip", tc_clip_ref.tc_clip,
        (1, 2, 32), clip_seed=51, seed=51, variant="smoke", slow=True,
        overrides={**_classes(6), "model.class_names": ("ApplyEyeMakeup", "Yo-Yo",
                                                       "brush_hair", "a", "b c", "d")},
        apply_kwargs=_tc_clip_forced, check=_tc_clip_margins),
]


# --- C3D and X3D (reference/mmaction2_cost.md 7, 8): C3D (22 entries) at full widths on
# 16 frames of 32 px, its fc6 built for them (512 x 1 x 2 x 2 = 2048 inputs; the real
# 8192-input fc6 and the parameter count: tests/test_c3d_x3d.py); X3D-M and X3D-S at full
# depth (568 entries each, one network) on small clips.
ZOO += [
    Row("c3d_32px", "C3D", "c3d", "mmaction2", mmaction2.c3d, (1, 16, 32), clip_seed=60,
        seed=60, overrides={**_classes(9), "model.backbone.input_size": (16, 32, 32)},
        keys=22, has_keys=("module.backbone.fc6.weight", "module.backbone.conv5b.conv.bias"),
        note="parity at 32 px (fc6 sized for it); 112 px names and shapes", zoo_config=True),
    Row("x3d_m", "X3D (X3D-M, X3D-S)", "x3d", "mmaction2", mmaction2.x3d, (2, 4, 64),
        clip_seed=61, seed=61, overrides=_classes(9), keys=568,
        has_keys=("module.backbone.layer3.10.se_module.fc2.bias",
                  "module.cls_head.fc1.weight")),
    Row("x3d_s", "X3D-S", "x3d", "mmaction2", mmaction2.x3d, (1, 13, 32), clip_seed=62,
        seed=62, variant="s", overrides=_classes(9), keys=568, slow=True),
]


# --- TIN and TANet (reference/mmaction2_cost.md 12, 13): numerics on the ResNet-18 smoke
# models (4 frames); the ResNet-50 zoo configs' 448 and 544 state_dict entries (320 + 16 x
# 8 interlace, 320 + 16 x 14 TAM) are checked by name and shape in tests/test_tin_tanet.py.

def _zeroed_changes_logits(part: str, name: str):
  """A check: the row's weights with every `part`...`name` tensor zeroed give other
  logits, so the comparison sees the temporal module."""
  def check(r: Result):
    sd = {k: (v * 0 if part in k and k.endswith(name) else v) for k, v in r.state_dict.items()}
    assert sum(part in k and k.endswith(name) for k in sd) >= 8
    ours = _convert_and_run(r.config, sd, r.clip, "mmaction2")
    assert max_abs_diff(ours, r.ours) > 1e-3
  return check


ZOO += [
    Row("tin_r18", "TIN-ResNet-50", "tin_r50", "mmaction2", mmaction2.tin, (2, 4, 32),
        clip_seed=70, seed=70, variant="smoke", overrides=_classes(9), keys=122 + 8 * 8,
        has_keys=("module.backbone.layer3.1.conv1.conv.net1.offset_net.fc2.bias",
                  "module.backbone.layer1.0.conv1.conv.net2.weight"),
        check=_zeroed_changes_logits(".offset_net.", "fc2.bias"),
        note="parity at ResNet-18; ResNet-50 names and shapes"),
    Row("tanet_r18", "TANet-ResNet-50", "tanet_r50", "mmaction2", mmaction2.tanet,
        (2, 4, 32), clip_seed=71, seed=71, variant="smoke", overrides=_classes(9),
        keys=122 + 8 * 14, has_keys=("module.backbone.layer4.1.tam.G.3.weight",
                                     "module.backbone.layer2.0.block.downsample.conv.weight"),
        check=_zeroed_changes_logits(".tam.G.", "3.weight"),
        note="parity at ResNet-18 and ResNet-50 (bottleneck TAM, as upstream)"),
    Row("tanet_r50_bottleneck", "TANet-ResNet-50", "tanet_r50", "mmaction2", mmaction2.tanet,
        (1, 4, 32), clip_seed=72, seed=72, variant="smoke",
        overrides={**_classes(9), "model.backbone.depth": 50}, keys=544, slow=True,
        # 16 TAMs with random statistics give logits of std ~96: 1e-4 of their scale.
        tolerance=1e-2),
]

# --- Audio TSN-R18 (reference/mmaction2_cost.md 9, 10, 17): the zoo config on log-mel
# features [B, T, F] (64 rows of 80 mel bins here; the model takes any T and F).

def _audio_checks(r: Result):
  """The one-channel conv1 is (64, 1, 7, 7) upstream; an RGB trunk's (64, 3, 7, 7) is
  refused with its key named, and the 1.x checkpoint layout converts the same."""
  sd = {k[len("module."):]: v for k, v in r.state_dict.items()}
  assert tuple(sd["backbone.conv1.conv.weight"].shape) == (64, 1, 7, 7)
  jax.tree.map(np.testing.assert_array_equal,
               converters.convert("mmaction2", {"state_dict": sd, "meta": {}}, r.config),
               r.variables)
  sd["backbone.conv1.conv.weight"] = torch.zeros(64, 3, 7, 7)
  with pytest.raises(converters.ConversionError, match=r"backbone\.conv1\.conv\.weight"):
    converters.convert("mmaction2", sd, r.config)


ZOO += [
    Row("audio_tsn_r18", "Audio TSN-ResNet-18", "audio_tsn_r18", "mmaction2",
        mmaction2.audio_tsn, (2, 64, 80), clip_seed=80, seed=80, overrides=_classes(9),
        keys=122, has_keys=("module.backbone.layer4.1.conv2.bn.running_var",
                            "module.cls_head.fc_cls.weight"),
        make_input=mmaction2.audio_features, check=_audio_checks),
]


# --- TimeSformer (reference/mmaction2_cost.md 16): the three attention types at ViT-B/16's
# width and heads (768 channels, 12 heads of 64), 2 layers, on 4 frames of 32 px (2 x 2
# patches a frame, 17 tokens), two clips; per layer 20 state_dict entries (divided) or 12,
# plus 7 (6 without the time embedding) and the head's 2. ViT-B/16's names and shapes:
# tests/test_timesformer.py.
_TIMESFORMER_SMALL = {"model.backbone.num_layers": 2, "model.backbone.num_frames": 4,
                      "model.backbone.img_size": 32, "data.num_frames": 4,
                      "data.image_size": 32}
ZOO += [
    Row("timesformer_divst", "TimeSformer (divST, jointST, spaceOnly)", "timesformer",
        "mmaction2", mmaction2.timesformer, (2, 4, 32), clip_seed=80, seed=80,
        overrides={**_classes(9), **_TIMESFORMER_SMALL}, keys=2 * 20 + 7 + 2,
        has_keys=("module.backbone.transformer_layers.layers.1.attentions.0.temporal_fc.bias",
                  "module.backbone.transformer_layers.layers.0.attentions.1.attn.in_proj_weight",
                  "module.backbone.transformer_layers.layers.1.ffns.0.norm.weight",
                  "module.backbone.time_embed"),
        zoo_config=True, note="parity of divided, joint and space-only attention at 2 "
                              "layers on 32 px clips; ViT-B/16 names and shapes"),
    Row("timesformer_jointst", "TimeSformer jointST", "timesformer", "mmaction2",
        mmaction2.timesformer, (2, 4, 32), clip_seed=81, seed=81, variant="jointst",
        overrides={**_classes(9), **_TIMESFORMER_SMALL}, keys=2 * 12 + 7 + 2,
        has_keys=("module.backbone.transformer_layers.layers.1.norms.1.bias",
                  "module.backbone.transformer_layers.layers.0.ffns.0.layers.0.0.weight")),
    Row("timesformer_spaceonly", "TimeSformer spaceOnly", "timesformer", "mmaction2",
        mmaction2.timesformer, (2, 4, 32), clip_seed=82, seed=82, variant="spaceonly",
        overrides={**_classes(9), **_TIMESFORMER_SMALL}, keys=2 * 12 + 6 + 2,
        has_keys=("module.backbone.transformer_layers.layers.1.attentions.0.attn.out_proj.bias",)),
]


# --- TRN and TPN (reference/mmaction2_cost.md 14, 15): numerics on the ResNet-18 smoke
# models (TRN's relations drawn after np.random.seed(relation_seed) on both sides; TPN with
# the pyramid at ResNet-18's widths, 4 frames pooled to 1). In tests/test_trn_tpn.py: the
# ResNet-50 zoo configs' names and shapes (TRN 348 entries, TPN 379), TRNHead at 8
# frames, TPN's training forward with its auxiliary head.

def _relation_seed_matters(r: Result):
  """With other relation seeds (other tuples drawn) the heads alone, on the reference's
  frame features, give other logits: the reference's after np.random.seed of each."""
  from vidjax.models.heads.trn import relation_tuples  # pylint: disable=import-outside-toplevel
  t, size = r.clip.shape[1], r.clip.shape[2]
  seeds = (r.config.model.relation_seed + 1, r.config.model.relation_seed + 3)
  assert ({tuple(map(tuple, c)) for c in relation_tuples(t, 3, seeds[0])}
          != {tuple(map(tuple, c)) for c in relation_tuples(t, 3, seeds[1])})
  with torch.no_grad():
    feats = r.ref.backbone(to_torch_input(r.clip).reshape(-1, 3, size, size))
  head = build_model(r.config.model).head
  outs = []
  for seed in seeds:
    with jax.default_matmul_precision("highest"):
      ours = np.asarray(head.clone(parent=None, relation_seed=seed).apply(
          {"params": r.variables["params"]["head"]}, feats.numpy().transpose(0, 2, 3, 1),
          num_segments=t))
    np.random.seed(seed)
    with torch.no_grad():
      theirs = r.ref.cls_head(feats, t).numpy()
    assert max_abs_diff(ours, theirs) <= 1e-4
    outs.append(ours)
  assert max_abs_diff(outs[0], outs[1]) > 1e-3


def _tpn_fcn_copy(r: Result):
  """TPNHead's fcn-test copy of fc_cls (`cls_head.new_cls.*`, saved by upstream after a
  test) converts to the same variables; a tensor that is not a copy is refused."""
  sd = dict(r.state_dict)
  fc = sd["module.cls_head.fc_cls.weight"]
  sd["module.cls_head.new_cls.weight"] = fc[..., None, None, None].clone()
  sd["module.cls_head.new_cls.bias"] = sd["module.cls_head.fc_cls.bias"].clone()
  jax.tree.map(np.testing.assert_array_equal, converters.convert("mmaction2", sd, r.config),
               r.variables)
  sd["module.cls_head.new_cls.bias"] = sd["module.cls_head.new_cls.bias"] + 1
  with pytest.raises(converters.ConversionError, match="cls_head.new_cls.bias"):
    converters.convert("mmaction2", sd, r.config)


ZOO += [
    Row("trn_r18", "TRN-ResNet-50", "trn_r50", "mmaction2", mmaction2.trn, (2, 4, 32),
        clip_seed=80, seed=80, variant="smoke", overrides=_classes(9), keys=120 + 2 + 3 * 4,
        has_keys=("module.cls_head.consensus.fc_fusion_scales.2.3.bias",),
        check=_relation_seed_matters,
        note="ResNet-50 names and shapes; relations drawn as upstream's after "
             "np.random.seed (TRNHead alone at 8 frames too); parity at ResNet-18"),
    Row("tpn_tsm_r18", "TPN-TSM-ResNet-50", "tpn_tsm_r50", "mmaction2", mmaction2.tpn,
        (2, 4, 32), clip_seed=82, seed=82, variant="smoke", overrides=_classes(9),
        keys=120 + 2 + 59, has_keys=("module.backbone.layer1.0.conv1.conv.net.weight",
                                     "module.neck.aux_head.fc.weight"),
        check=_tpn_fcn_copy, note="parity at ResNet-18; ResNet-50 names and shapes"),
    Row("tpn_slowonly_r18", "TPN-SlowOnly-ResNet-50", "tpn_slowonly_r50", "mmaction2",
        mmaction2.tpn, (2, 4, 32), clip_seed=83, seed=83, variant="smoke",
        overrides=_classes(9), keys=120 + 2 + 59,
        has_keys=("module.neck.level_fusion_2.downsamples.1.conv.bn.running_var",),
        note="parity at ResNet-18; ResNet-50 names and shapes"),
]



def _param(row: Row):
  return pytest.param(row, id=row.name, marks=[pytest.mark.slow] if row.slow else [])


# --- running a row ------------------------------------------------------------------------

def _run_model(row, config, clip, ref, sd):
  variables = converters.convert(row.source, sd, config)
  module = build_model(config.model)
  extra = row.apply_kwargs(ref, clip) if row.apply_kwargs else {}

  def apply(v, x):
    return module.apply(v, x, train=False, **extra)

  with jax.default_matmul_precision("highest"):
    ours = np.asarray((jax.jit(apply) if row.jit else apply)(variables, clip))
  # References with their own pixel normalisation (C3D, X3D) take raw pixels.
  normalise = (resolve_model_config(config.model).get("pixel_mean") is not None
               and not getattr(ref, "takes_raw_pixels", False))
  with torch.no_grad():
    theirs = ref(ref.torch_input(clip) if row.make_input else
                 to_torch_input(clip, normalise)).numpy()
  assert ours.shape == theirs.shape == (clip.shape[0], config.model.num_classes)
  assert theirs.std() > 0.1, "reference logits are degenerate; the test would prove nothing"
  return variables, ours, theirs, max_abs_diff(ours, theirs)


def _run_backbone(row, config, clip, ref, sd):
  del row
  m = resolve_model_config(config.model)
  frames = tcpnet_backbones.frames(config, clip)
  t = clip.shape[1]
  ours_module = build_backbone(m.backbone, jnp.float32)
  variables = convert_backbone({"module.base_model." + k: v for k, v in sd.items()},
                               ours_module, frames, m.backbone.name, t)

  def fn(v, a):
    return ours_module.apply(v, a, train=False, num_segments=t)

  with jax.default_matmul_precision("highest"):
    ours = np.asarray(jax.jit(fn)(variables, jnp.asarray(frames)))
  with torch.no_grad():
    theirs = ref(nchw(frames)).numpy().transpose(0, 2, 3, 1)
  assert theirs.std() > 0.05, "reference features are degenerate; the test would prove nothing"
  diff = max_abs_diff(ours, theirs)
  print(f"  max abs diff {diff:.3g}, max |feature| {np.abs(theirs).max():.3g}")
  return variables, ours, theirs, diff / max(1.0, float(np.abs(theirs).max()))


def run_row(row: Row) -> Result:
  """Builds, converts and runs one row; returns the comparison."""
  config = row.load_config()
  clip = (row.make_input or random_clip)(*row.clip, seed=row.clip_seed)
  ref = row.reference(config, clip, row.seed)
  sd = ref.state_dict()
  if row.level == "model":  # as upstream's DataParallel saves it
    sd = {"module." + k: v for k, v in sd.items()}
  if row.keys is not None:
    assert len(sd) == row.keys
  for key in row.has_keys:
    assert key in sd, key
  run = _run_model if row.level == "model" else _run_backbone
  variables, ours, theirs, diff = run(row, config, clip, ref, sd)
  result = Result(row, config, clip, ref, sd, variables, ours, theirs, diff)
  if row.check is not None:
    row.check(result)
  return result


@pytest.mark.parametrize("row", [_param(r) for r in ZOO])
def test_parity(row):
  diff = run_row(row).diff
  print(f"{row.name}: max abs difference {diff:.3g} (tolerance {row.tolerance:g})")
  assert diff <= row.tolerance


def test_table_is_consistent():
  names = [r.name for r in ZOO]
  assert len(set(names)) == len(names)
  for row in ZOO:
    assert row.source in converters.known_sources(), row.name
    assert row.reference.__module__ == f"torch_references.{row.source}" or (
        row.reference.__module__.startswith(f"torch_references.{row.source}_")), row.name
    assert os.path.exists(os.path.join(REPO, "configs", f"{row.config}.py")), row.name
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    assert markdown() in f.read(), "README's zoo table: python tests/test_parity.py --markdown"


# --- the README's table -------------------------------------------------------------------

def markdown() -> str:
  """README's "Model zoo" table: a line per zoo config, in table order."""
  lines = ["| Model | Config | Converter source | Verified |", "|---|---|---|---|"]
  configs = list(dict.fromkeys(r.config for r in ZOO if r.zoo))
  for name in configs:
    rows = [r for r in ZOO if r.zoo and r.config == name]
    verified = rows[0].note or "parity"
    head = resolve_model_config(rows[0].load_config().model).get("head") or {}
    if "num_segments" in head:  # the head is built for T frames: say which were compared
      frames = sorted({r.clip[1] for r in rows})
      verified += ", " + " and ".join(map(str, frames)) + " frames"
    verified += " (`tests/test_parity.py`)"
    if name in LEARNING_TESTED:
      verified += "; learning test"
    lines.append(f"| {rows[0].model} | `configs/{name}.py` | `{rows[0].source}` | {verified} |")
  return "\n".join(lines)


def measure() -> str:
  """Runs every row; a markdown table of the measured differences."""
  lines = ["| Row | Model | Max difference | Tolerance | Seconds |", "|---|---|---|---|---|"]
  for row in ZOO:
    start = time.perf_counter()
    diff = run_row(row).diff
    lines.append(f"| {row.name} | {row.model} | {diff:.3g} | {row.tolerance:g} | "
                 f"{time.perf_counter() - start:.0f} |")
    print(lines[-1], file=sys.stderr, flush=True)  # progress; the table follows
  return "\n".join(lines)


if __name__ == "__main__":
  import conftest  # pylint: disable=import-outside-toplevel
  try:
    if "--markdown" in sys.argv[1:]:
      print(markdown())
    elif "--measure" in sys.argv[1:]:
      print(measure())
    else:
      raise SystemExit("usage: python tests/test_parity.py --markdown | --measure")
  finally:
    conftest.pytest_unconfigure(None)  # the session's XLA cache directory
