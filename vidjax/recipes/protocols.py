"""The test protocols of every recipe family: views per video and how they are fused.

A protocol is `clips` temporal clips x the crops of `crop`; `config.eval.num_views` is
computed from them, never set by hand (the eval pipeline checks the product,
vidjax/data/pipeline.py `test_views`). Families name protocols through their variant
parts (`test2x3`, GC's `test`); the sampler and crop names are vidjax/data/sampling.py's
and vidjax/data/transforms.py's.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from vidjax.data import transforms


@dataclasses.dataclass(frozen=True)
class Protocol:
  clips: int                 # temporal clips per video (data.test_clips)
  sampling: str              # data.test_sampling: uniform | twice | ten_clips | mmaction2_3d
  crop: str                  # data.test_crop: center | three_crop | ten_crop | full_res_three
  size: int = 224            # crop side (data.image_size; full-resolution crops: 256)
  scale: int = 256           # short side before the crops (data.test_scale)
  fusion: str = ""           # eval.fusion over the views; "" keeps the family's
  batch_size: int = 0        # eval videos per batch; 0 keeps the family's

  @property
  def num_views(self) -> int:
    return self.clips * transforms.num_test_crops(self.crop)


PROTOCOLS: dict[str, Protocol] = {
    # The per-epoch eval: 1 clip, short side 256, centre crop 224.
    "test1": Protocol(1, "uniform", "center"),
    # TSM: twice sample x 3 full-resolution 256 crops; TSM averages logits over views.
    "test2x3": Protocol(2, "twice", "full_res_three", size=256, fusion="mean_logits",
                        batch_size=4),
    # TSM (and GC's Kinetics `test3`): 10 clips x 3 full-resolution crops.
    "test30": Protocol(10, "uniform", "full_res_three", size=256, fusion="mean_logits",
                       batch_size=4),
    # TCPNet: its ten clip offsets, softmax per view, the max over the 30 views.
    "tcp_test30": Protocol(10, "ten_clips", "full_res_three", size=256,
                           fusion="max_softmax", batch_size=2),
    # GC on Something ("8x1x2"): twice sample x 1 full-resolution 256 centre crop.
    "gc_test2": Protocol(2, "twice", "center", size=256, fusion="mean_logits"),
    # GC on Kinetics ("8x1x10"): 10 clips x 1 full-resolution 256 centre crop.
    "gc_test10": Protocol(10, "uniform", "center", size=256, fusion="mean_logits",
                          batch_size=4),
    # MMAction2's 3D models: 1 centred clip (its 1.x test sampling), short side 256,
    # centre crop 224 (the val pipeline, the per-epoch eval).
    "mmaction2_val": Protocol(1, "mmaction2_3d", "center"),
    # MMAction2's 3D test: 10 clips x ThreeCrop(256) after short side 256.
    "mmaction2_test30": Protocol(10, "mmaction2_3d", "three_crop", size=256, batch_size=2),
    # MMAction2's C2D test: 10 clips x ThreeCrop(224) after short side 224.
    "mmaction2_c2d_test30": Protocol(10, "mmaction2_3d", "three_crop", size=224, scale=224,
                                     batch_size=2),
    # MMAction2's C3D on UCF101: short side 128, centre crop 112; 1 clip (val) or 10.
    "mmaction2_c3d_val": Protocol(1, "mmaction2_3d", "center", size=112, scale=128),
    "mmaction2_c3d_test10": Protocol(10, "mmaction2_3d", "center", size=112, scale=128),
    # X3D-S (trained at 160 px): centre crop 160 after short side 182 (the per-epoch
    # eval); MMAction2 1.x's test: 10 clips x ThreeCrop(182) after short side 182.
    "mmaction2_x3d_s_val": Protocol(1, "mmaction2_3d", "center", size=160, scale=182),
    "mmaction2_x3d_s_test30": Protocol(10, "mmaction2_3d", "three_crop", size=182,
                                       scale=182, batch_size=2),
}
# MMAction2's 2D models on Something (TANet, TRN): twice sample (2 clips of centred and
# un-centred segments) x ThreeCrop(256) after short side 256, softmax averaged.
PROTOCOLS["mmaction2_sth_test2x3"] = Protocol(2, "twice", "three_crop", size=256,
                                              fusion="mean_softmax", batch_size=4)


def set_views(config: ml_collections.ConfigDict, clips: int, crop: str) -> None:
  """A protocol outside the table (TC-CLIP's): `clips` temporal clips x the crops of
  `crop`, and `eval.num_views` computed from them."""
  from vidjax.data import transforms  # pylint: disable=g-import-not-at-top
  config.data.update(test_clips=clips, test_crop=crop)
  config.eval.num_views = clips * transforms.num_test_crops(crop)


def apply(config: ml_collections.ConfigDict, name: str) -> Protocol:
  """Sets the `data.test_*` fields, `eval.num_views` (clips x crops) and the fusion."""
  p = PROTOCOLS[name]
  config.data.update(image_size=p.size, test_scale=p.scale, test_clips=p.clips,
                     test_sampling=p.sampling, test_crop=p.crop)
  config.eval.num_views = p.num_views
  if p.fusion:
    config.eval.fusion = p.fusion
  if p.batch_size:
    config.eval.batch_size = p.batch_size
  return p
# MMAction2's TimeSformer test: 1 clip x ThreeCrop(224) after short side 224, softmax
# averaged.
PROTOCOLS["mmaction2_timesformer_test3"] = Protocol(1, "mmaction2_3d", "three_crop",
                                                    size=224, scale=224)
