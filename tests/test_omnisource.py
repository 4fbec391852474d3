"""OmniSource: the released checkpoints' layouts convert onto the `omnisource` variants,
and training batches mix a real video list and a real image folder at exact per-source
shares (label maps, resume, errors, a training run)."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import converters
from conftest import load_config
from torch_references import mmaction2 as ref
from vidjax import config_defaults, models
from vidjax.data import demo, mixture, pipeline

NAMES = list(demo.CLASS_NAMES) + ["cat", "dog"]   # targets 6 and 7 only come from images


def _count(tree) -> int:
  import jax  # pylint: disable=import-outside-toplevel
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


# --- the released checkpoints -----------------------------------------------------------
# MMAction2 0.x's OmniSource releases are tested upstream with the zoo's TSN-R50 (1x1x3),
# SlowOnly-R50 (4x16) and SlowOnly-R101 (8x8) configs, so they hold those layouts; the
# parity rows c2d_r50_nopool (MMAction2's 2D ResNet + TSNHead), slowonly_r50 and
# slowonly_r101_8x8 check the numerics. Here: names and shapes at full depth, in the
# 0.x file layout, and the zoo's parameter counts with 400 classes.
@pytest.mark.parametrize("name,variant,million", [
    ("tsn_r50", "omnisource", 24.33),
    ("slowonly_r50", "omnisource", 32.45),
    ("slowonly_r50", "r101_8x8_omnisource", 60.36),
])
def test_released_layouts_convert_strictly_onto_the_variants(name, variant, million):
  config = load_config(name, variant)
  m = models.resolve_model_config(config.model)
  with torch.device("meta"):   # names and shapes only: no weights drawn
    if m.name == "recognizer2d":
      net = ref.Recognizer2D(ref.ResNet2d(m.backbone.depth), ref.TSNHead(2048, 400))
    else:
      net = ref.Recognizer3D(ref.ResNet3d(m.backbone), ref.I3DHead(2048, 400))
  sd = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in net.state_dict().items()}
  checkpoint = {"meta": {"mmaction_version": "0.8.0", "epoch": 256}, "state_dict": sd}
  variables = converters.convert("mmaction2", checkpoint, config)   # strict
  assert round(_count(variables["params"]) / 1e6, 2) == million
  # The variant is the recipe plus the web sources: 2/5 of each batch is Kinetics.
  shares = mixture.batch_shares(mixture.specs(config.data), config.batch_size)
  assert shares[0] == {"tsn_r50": 256, "slowonly_r50": 128}[name]
  assert sum(shares) == config.batch_size and shares[1:] == [shares[0] // 2] * 3


# --- a real mixture ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """12 demo mp4 videos (labels 0..5) and an image folder kitten/ puppy/ (jpg and png at
  two depths), plus the 8 target class names."""
  root = tmp_path_factory.mktemp("omni")
  demo.write_video_files(str(root), split="train", num_examples=12, num_frames=8,
                         image_size=32, seed=0)
  (root / "names.txt").write_text("\n".join(NAMES) + "\n")
  rng = np.random.default_rng(0)
  for c in ("kitten", "puppy"):
    for i in range(5):
      folder = root / "img" / c / ("deep" if i % 2 else "")
      folder.mkdir(parents=True, exist_ok=True)
      pixels = rng.integers(0, 255, (36 + 4 * i, 44, 3), np.uint8)
      Image.fromarray(pixels).save(folder / f"{c}{i}.{'png' if i % 2 else 'jpg'}")
  return root


def _data(root, **kw):
  d = config_defaults.data_config(
      name="tiny", root=str(root), train_list="train_list.txt", eval_list="train_list.txt",
      label_names=str(root / "names.txt"), num_classes=len(NAMES), num_frames=4,
      image_size=32, train_resize=36, test_scale=32, num_threads=1, prefetch=2,
      sources=({"name": "videos", "kind": "videos", "share": 3},
               {"name": "web", "kind": "images", "root": str(root / "img"), "share": 0.25,
                "label_map": {"kitten": "cat", "puppy": 7}}))
  d.update(kw)
  return d


def test_every_batch_holds_each_source_share_with_mapped_labels(data):
  d = _data(data)
  it = pipeline.train_iterator(d, 4, seed=0)
  batches = [next(it) for _ in range(8)]   # 24 videos = 2 epochs, 8 images = 0.8 of one
  for b in batches:
    assert b["clip"].shape == (4, 4, 32, 32, 3) and b["clip"].dtype == np.uint8
    assert b["source"].tolist() == [0, 0, 1, 0]   # 3 + 1, spread over the batch
    videos, images = b["source"] == 0, b["source"] == 1
    # Videos keep their labels (0..5); the folders map to cat (6) and dog (7).
    assert set(b["label"][videos]) <= set(range(6)) and set(b["label"][images]) <= {6, 7}
    # An image is a clip of one frame repeated, every copy cropped and flipped alike.
    frames = b["clip"][images]
    assert (frames == frames[:, :1]).all() and frames.std() > 10
  labels = np.concatenate([b["label"][b["source"] == 0] for b in batches])
  assert np.bincount(labels, minlength=6).tolist() == [4] * 6   # each video twice
  assert {int(b["label"][2]) for b in batches} == {6, 7}
  assert pipeline.steps_per_epoch(d, 4) == 4   # a pass over the 12 videos, 3 per batch


def test_unreadable_files_are_replaced_from_their_own_source(data, tmp_path):
  videos = (data / "train_list.txt").read_text() + "missing.mp4 0\n"
  (tmp_path / "videos.txt").write_text(videos)
  images = sorted(str(p) for p in (data / "img").rglob("*.*"))
  (tmp_path / "images.txt").write_text("".join(f"{p} 6\n" for p in images) + "nope.jpg 7\n")
  d = _data(data, sources=(
      {"kind": "videos", "root": str(data), "list": str(tmp_path / "videos.txt"), "share": 3},
      {"kind": "images", "root": str(tmp_path), "list": "images.txt", "share": 1}))
  it = pipeline.train_iterator(d, 4, seed=0)
  for _ in range(12):   # 3 passes over the 13 videos, 1.2 over the 11 images
    assert next(it)["source"].tolist() == [0, 0, 1, 0]
  assert it.skipped_files == 2


def test_interleaved_order_spreads_each_source():
  order = pipeline.interleaved_order([4, 2, 2])   # rows 0-3, 4-5, 6-7 by source
  assert order.tolist() == [0, 4, 6, 1, 2, 5, 7, 3]
  source = np.repeat([0, 1, 2], [128, 64, 64])[pipeline.interleaved_order([128, 64, 64])]
  for part in source.reshape(8, 32):   # any of 8 devices' rows: 16 + 8 + 8
    assert np.bincount(part).tolist() == [16, 8, 8]


def test_resume_reads_the_same_batches_and_checks_the_sources(data):
  d = _data(data)
  it = pipeline.train_iterator(d, 4, seed=3)
  for _ in range(3):
    next(it)
  state = it.get_state()
  after = [next(it) for _ in range(3)]
  resumed = pipeline.train_iterator(d, 4, seed=3)
  resumed.set_state(json.loads(json.dumps(state)))   # as the checkpoint stores it
  for a, b in zip(after, [next(resumed) for _ in range(3)]):
    for key in ("clip", "label", "source"):
      np.testing.assert_array_equal(a[key], b[key])
  other = pipeline.train_iterator(_data(data, sources=d.sources[:1]), 3, seed=3)
  with pytest.raises(pipeline.DataError, match=r"3 videos \+ 1 web clips per batch"):
    other.set_state(state)


def test_image_list_and_label_map_files(data, tmp_path):
  """An image list with integer labels, mapped by a JSON file and by a text file."""
  paths = sorted(str(p.relative_to(data / "img")) for p in (data / "img").rglob("*.*"))
  (tmp_path / "list.txt").write_text("".join(f"{p} {10 + i % 2}\n" for i, p in enumerate(paths)))
  (tmp_path / "map.json").write_text(json.dumps({"10": "dog", "11": 2}))
  (tmp_path / "map.txt").write_text("10 7\n11 square\n")
  names = mixture.label_names(_data(data))
  for label_map, want in (("map.json", [7, 2]), ("map.txt", [7, NAMES.index("square")])):
    spec = mixture.Spec(1, "web", "images", root=str(data / "img"),
                        list=str(tmp_path / "list.txt"),
                        label_map=str(tmp_path / label_map))
    source = mixture.build(spec, _data(data), names)
    assert len(source) == len(paths) and os.path.exists(source[0]["image"])
    assert [int(source[i]["label"]) for i in range(len(source))] == [
        want[i % 2] for i in range(len(paths))]


@pytest.mark.parametrize("change,message", [
    ({"root": "missing"}, r"data.sources\[1\] \('web'\): image folder .*missing does not exist"),
    ({"label_map": {"kitten": 6}}, r"label 'puppy' \(of .*\) is not in the label_map dict"),
    ({"label_map": {"kitten": 6, "puppy": "horse"}},
     r"the label_map dict maps 'puppy' to 'horse', which is not a target class"),
    ({"label_map": {"kitten": 6, "puppy": 8}}, r"8, which is not .*expected a class index 0..7"),
    ({"label_map": "no_map.json"}, r"label map .*no_map.json does not exist"),
    ({"label_map": None}, r"label 'kitten' \(of .*\) names no target class.*or a label_map"),
    ({"share": 2}, r"3 \(videos\) \+ 2 \(web\) = 5 clips per batch, but config.batch_size=4"),
    ({"share": 0.3}, r"share 0.3 of config.batch_size=4 is 1.2 clips"),
    ({"kind": "audio"}, r"kind 'audio'; expected one of"),
    ({"weight": 1}, r"unknown fields \['weight'\]"),
])
def test_bad_sources_are_one_clear_line(data, change, message):
  d = _data(data)
  d.sources = (d.sources[0], {**d.sources[1], **change})
  config = load_config("tsn_r50", "smoke", batch_size=4)
  config.data = d
  with pytest.raises(mixture.SourceError, match=message) as e:
    mixture.check(config)
  assert "\n" not in str(e.value)


@pytest.mark.slow
def test_training_run_on_a_mixture(data, tmp_path):
  from vidjax.train import trainer, writers  # pylint: disable=import-outside-toplevel
  config = load_config("tsn_r50", "smoke")
  config.data = _data(data, num_frames=2)
  config.model.num_classes = len(NAMES)
  config.update(batch_size=4, total_steps=2, log_every_steps=1, checkpoint_every_steps=2)
  config.eval.batch_size = 4
  results = trainer.run(config, str(tmp_path))
  assert np.isfinite(results["eval/loss"])
  rows = writers.read_jsonl(os.path.join(tmp_path, "metrics.jsonl"))
  assert [r["steps_per_epoch"] for r in rows if "steps_per_epoch" in r] == [4]
  assert sum("train/loss" in r for r in rows) == 2


def test_eval_only_needs_no_training_source(monkeypatch):
  """`--mode eval` of an omnisource config reads the eval list only: the web sources need
  not exist."""
  from vidjax.train import trainer  # pylint: disable=import-outside-toplevel
  seen = []

  def resolve_data(config, workdir):
    del workdir
    seen.append(config.data.sources)
    raise RuntimeError("resolved")

  monkeypatch.setattr(trainer, "resolve_data", resolve_data)
  config = load_config("slowonly_r50", "r101_8x8_omnisource")
  with pytest.raises(RuntimeError, match="resolved"):
    trainer.evaluate_only(config, "")
  assert seen == [()]
