"""TC-CLIP (model.name "tc_clip", converter source "tc_clip"): the merge schedule, class
names and prompts, the protocols' configs and optimiser groups, WiSE-FT, the full-size
checkpoint layout, the start from CLIP (reference/tcclip.md 6.3), released checkpoints
with a pickled OmegaConf config through the CLI, and the smoke model's training steps.
Numerics: tests/test_parity.py's tc_clip rows (choices forced, reference/tcclip.md 2.6).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_config
import converters
from vidjax import models
from vidjax.models.clip import recognizer
from vidjax.models.clip.tc_vision import merge_schedule
from vidjax.recipes import tc_clip as tc_recipe
from vidjax.train import optim

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
  sys.path.insert(0, HERE)


def test_merge_schedule_matches_upstream_counts():
  # reference/tcclip.md 2.2 (c), 58 seeds a frame into 96 context tokens, r = 100.
  assert merge_schedule(16 * 58, 96, 100) == [100] * 8 + [32]
  assert merge_schedule(8 * 58, 96, 100) == [100, 100, 100, 68]
  assert merge_schedule(4 * 58, 96, 100) == [100, 36]
  assert merge_schedule(2 * 58, 96, 100) == [20]
  assert merge_schedule(58, 96, 100) == []
  for start in range(1, 300, 7):
    steps = merge_schedule(start, 6, 4)
    assert start - sum(steps) == min(start, 6)
  with pytest.raises(ValueError, match="must be positive"):
    merge_schedule(10, 0, 4)


def test_prompts_split_camel_case_and_underscores():
  cfg = models.resolve_model_config(load_config("tc_clip", "smoke").model)
  cfg.update(class_names=("ApplyEyeMakeup", "brush_hair", "Yo-Yo"), num_classes=0)
  assert recognizer.prompts(cfg) == ["a photo of a Apply Eye Makeup.",
                                     "a photo of a brush hair.", "a photo of a Yo- Yo."]
  config = load_config("tc_clip", "smoke", **{"model.n_ctx": 3})
  with pytest.raises(ValueError, match="the 4 tokens before '{}' are the learned context "
                     "slots, but model.n_ctx=3"):
    models.build_model(config.model)


def test_label_files_in_upstreams_csv_and_json_layouts(tmp_path):
  """model.label_file reads TC-CLIP's `id,name` CSVs and FROSTER's {id: description} JSON
  (ids in any order) as the prompts' class names; a broken file is one line naming it."""
  from vidjax.data import sources  # pylint: disable=import-outside-toplevel
  (tmp_path / "k.csv").write_text('id,name\n1,brush_hair\n0,ApplyEyeMakeup\n2,"a, b"\n')
  (tmp_path / "d.json").write_text(json.dumps({"1": "Yo-Yo: a toy.", "0": "Run: legs move."}))
  cfg = models.resolve_model_config(load_config("tc_clip", "smoke").model)
  cfg.update(label_file=str(tmp_path / "k.csv"), num_classes=0)
  assert recognizer.prompts(cfg) == ["a photo of a Apply Eye Makeup.",
                                     "a photo of a brush hair.", "a photo of a a, b."]
  cfg.update(label_file=str(tmp_path / "d.json"))
  assert recognizer.class_names(cfg) == ["Run: legs move.", "Yo-Yo: a toy."]
  bad = {"gap.csv": ("id,name\n0,a\n2,b\n", r"ids must be 0..N-1, each once; missing \[1\]"),
         "nohead.csv": ("0,a\n1,b\n", "expected an `id,name` header line"),
         "twice.csv": ("id,name\n0,a\n0,b\n", ":3: id 0 repeats"),
         "list.json": ("[1, 2]", "mapping each id to a non-empty string"),
         "cut.json": ('{"0": "a",', "not JSON"),
         "twice.json": ('{"0": "a", "00": "b"}', "id '00' repeats id 0"),
         "same.json": ('{"0": "a", "1": "a"}', ": id 1: class name 'a' repeats id 0")}
  for name, (text, message) in bad.items():
    (tmp_path / name).write_text(text)
    with pytest.raises(sources.AnnotationError, match=re.escape(str(tmp_path / name))
                       + ".*" + message):
      sources.read_label_names(str(tmp_path / name))


def test_protocol_variants():
  zs = load_config("tc_clip")
  assert (zs.data.name, zs.optim.lr, zs.batch_size, zs.grad_accum_steps) == (
      "kinetics400", 8e-6, 256, 16)
  assert (zs.optim.epochs, zs.optim.warmup_epochs, zs.optim.min_lr) == (10.0, 5.0, 8e-8)
  assert (zs.optim.betas, zs.optim.weight_decay, zs.optim.no_decay) == ((0.9, 0.98), 0.001, ())
  assert (zs.data.mixup_alpha, zs.data.cutmix_alpha, zs.label_smoothing) == (0.8, 1.0, 0.1)
  assert (zs.eval.num_views, zs.model.context_length, zs.model.dtype) == (2, 30, "bfloat16")
  fs = load_config("tc_clip", "few_shot,ucf101,k8,llm")
  assert (fs.data.name, fs.optim.lr, fs.optim.epochs, fs.model.context_length) == (
      "ucf101", 2e-6, 50.0, 77)
  assert "8shot" in fs.data.train_list and fs.model.label_file.endswith("labels_llm.txt")
  b2n = load_config("tc_clip", "base2novel_sthv2_s3")
  assert (b2n.optim.lr, b2n.optim.epochs, b2n.data.flip) == (3.33e-6, 12.0, False)
  full = load_config("tc_clip", "fully_supervised")
  assert (full.optim.lr, full.batch_size, full.eval.num_views, full.data.test_scale) == (
      2.2e-5, 512, 12, 224)
  for bad, why in (("few_shot,hmdb51", "needs a data set"), ("base2novel,k400", "base split"),
                   ("zero_shot,hmdb51", "trains on Kinetics-400"),
                   ("few_shot,sthv2,k2,llm", "no LLM"), ("k7", "unknown variant part")):
    with pytest.raises(ValueError, match=why):
      load_config("tc_clip", bad)


def test_prompt_parameters_get_ten_times_the_lr_and_token_embedding_none():
  config = load_config("tc_clip", "smoke")
  abstract = converters.expected_variables(config.model)["params"]
  labels = {"/".join(str(getattr(k, "key", k)) for k in path): label for path, label in
            jax.tree_util.tree_flatten_with_path(optim.param_labels(abstract, config.optim))[0]}
  assert labels["prompt_learner/ctx"] == "prompt"
  assert labels["text/prompt_generation/attn/in_proj/kernel"] == "prompt"
  assert labels["text/token_embedding/embedding"] == "token_embedding"
  assert labels["visual/resblocks_1/attn/local_global_bias_table"] == "default"
  groups = {g["group"]: g for g in optim.param_group_summary(abstract, config.optim)}
  assert groups["prompt"]["lr_mult"] == 10.0
  assert (groups["token_embedding"]["lr_mult"], groups["token_embedding"]["weight_decay"]) == (
      0.0, 0.0)


def _random_variables(config, seed: int) -> dict:
  """The smoke model's variables filled with random numbers (no init, no compile)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: rng.standard_normal(a.shape).astype(a.dtype),
                      converters.expected_variables(config.model))


@pytest.mark.slow
def test_wise_ft_command(tmp_path, capsys):
  """python -m vidjax.wise_ft on smoke checkpoints: alpha 0 gives the initial weights, 1
  the fine-tuned ones, 0.5 their mean except TC-CLIP's new parameters (fine-tuned); the
  output carries the run's config.json; mismatched trees, a bad alpha and an existing
  output are one `error:` line each, and nothing is written."""
  from vidjax import run_config, wise_ft  # pylint: disable=import-outside-toplevel
  from vidjax.checkpoint import load_variables, save_variables  # pylint: disable=import-outside-toplevel
  config = load_config("tc_clip", "smoke")
  init, tuned = _random_variables(config, 1), _random_variables(config, 2)
  save_variables(str(tmp_path / "init"), init)
  run = tmp_path / "run"
  save_variables(str(run / "best"), tuned)
  (run / "config.json").write_text(config.to_json())
  flat = lambda v: dict(wise_ft._leaves(v["params"]))  # pylint: disable=protected-access,unnecessary-lambda-assignment
  # The real CLI at alpha 0.5; alphas 0 and 1 through the same function in-process.
  done = subprocess.run([sys.executable, "-m", "vidjax.wise_ft", "--initial", str(tmp_path / "init"),
                         "--finetuned", str(run / "best"), "--alpha", "0.5",
                         "--output", str(tmp_path / "half")],
                        cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  assert run_config.checkpoint_spec(str(tmp_path / "half")) == str(tmp_path / "half")
  a, b = flat(init), flat(tuned)
  got = {0.5: flat(load_variables(str(tmp_path / "half")))}
  for alpha in (0.0, 1.0):
    got[alpha] = flat(wise_ft.wise_ft_variables(init, tuned, alpha))
  kept = 0
  for name in a:
    new = any(k in name for k in wise_ft.TC_CLIP_KEEP)
    kept += new
    np.testing.assert_array_equal(got[1.0][name], b[name])
    np.testing.assert_array_equal(got[0.0][name], b[name] if new else a[name])
    np.testing.assert_allclose(got[0.5][name], b[name] if new else (a[name] + b[name]) / 2,
                               rtol=1e-6, atol=1e-7)
  assert kept >= 3   # prompt context, VP layer, bias tables
  capsys.readouterr()

  def refused(args, match):
    with pytest.raises(SystemExit) as e:
      wise_ft.main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert re.search(match, err), err

  # Another model: one tensor of another shape, one missing.
  other = jax.tree.map(lambda x: x, init)
  other["params"]["visual"]["conv1"]["kernel"] = init["params"]["visual"]["conv1"]["kernel"][:4]
  del other["params"]["visual"]["ln_post"]
  save_variables(str(tmp_path / "other"), other)
  refused(["--initial", str(tmp_path / "other"), "--finetuned", str(run / "best"),
           "--output", str(tmp_path / "bad")],
          r"the --initial and --finetuned parameters differ: 2 only in --finetuned "
          r"\(visual/ln_post/bias, visual/ln_post/scale\); 1 of other shapes \(visual/conv1/kernel "
          r"\(4, 8, 3, 64\) vs \(8, 8, 3, 64\)\)\.")
  assert not os.path.exists(tmp_path / "bad")
  refused(["--initial", str(tmp_path / "init"), "--finetuned", str(run / "best"), "--alpha",
           "1.5", "--output", str(tmp_path / "bad")], r"--alpha=1.5: expected")
  refused(["--initial", str(tmp_path / "init"), "--finetuned", str(run / "best"),
           "--output", str(tmp_path / "half")], r"--output .*half exists")


@pytest.mark.slow
def test_full_size_checkpoint_names_and_shapes():
  """Upstream's 377 entries (reference/tcclip.md 6.2) plus CLIP's token embedding fill our
  full-size model, names and shapes; the training prompt buffers are dropped."""
  torch = pytest.importorskip("torch")
  from torch_references import tc_clip as ref_mod  # pylint: disable=import-outside-toplevel
  config = load_config("tc_clip")
  m = models.resolve_model_config(config.model)
  with torch.device("meta"):   # names and shapes only
    ref = ref_mod.TCCLIP(m, np.zeros((400, 30), np.int64), with_token_embedding=False)
  shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
  assert len(shapes) == 377
  assert shapes["prompt_learner.token_suffix"] == (400, 25, 512)
  assert shapes["image_encoder.transformer.resblocks.11.attn.local_global_bias_table"] == (12, 1, 2)
  assert "image_encoder.transformer.resblocks.0.attn.local_global_bias_table" not in shapes
  zero = np.zeros((), np.float32)
  sd = {"module." + k: np.broadcast_to(zero, s) for k, s in shapes.items()}
  abstract = converters.expected_variables(config.model)
  from converters import tc_clip as tc_converter  # pylint: disable=import-outside-toplevel
  with pytest.raises(converters.ConversionError, match="--clip_checkpoint"):
    tc_converter.convert_variables(sd, config.model, abstract)
  sd["token_embedding.weight"] = np.broadcast_to(zero, (49408, 512))
  variables = tc_converter.convert_variables(sd, config.model, abstract)
  flat = jax.tree_util.tree_flatten_with_path(variables)[0]
  want = jax.tree_util.tree_flatten_with_path(abstract)[0]
  assert [(p, v.shape) for p, v in flat] == [(p, v.shape) for p, v in want]
  params = sum(int(np.prod(v.shape)) for _, v in flat)
  upstream = sum(int(np.prod(s)) for k, s in shapes.items() if "token_" not in k)
  assert params == upstream + 49408 * 512


def test_start_from_clip_follows_the_spec():
  """OpenAI CLIP's layout -> TC-CLIP: q/k/v cut from in_proj, the VP layer a copy of the
  last text block (ln_1 also as ln_1_kv), ctx the embeddings of "a photo of a", new bias
  tables; the result fits the TC-CLIP config as its init_from."""
  pytest.importorskip("torch")
  from torch_references import clip as clip_ref  # pylint: disable=import-outside-toplevel
  from vidjax.train import checkpoint as ckpt_lib  # pylint: disable=import-outside-toplevel
  clip_config = load_config("clip_vitb16", "smoke")
  ref = clip_ref.clip(clip_config, None, seed=3)
  sd = {k: v.numpy() for k, v in ref.state_dict().items()}
  config = load_config("tc_clip", "smoke")
  variables = converters.convert("clip", sd, config)
  p = variables["params"]
  qkv = sd["visual.transformer.resblocks.1.attn.in_proj_weight"]
  attn = p["visual"]["resblocks_1"]["attn"]
  for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
    np.testing.assert_array_equal(attn[name]["kernel"], qkv[64 * i:64 * (i + 1)].T)
  assert "local_global_bias_table" not in p["visual"]["resblocks_0"]["attn"]
  assert attn["local_global_bias_table"].shape == (2, 1, 2)
  assert 0 < float(jnp.abs(attn["local_global_bias_table"]).max()) < 0.1
  vp, last = p["text"]["prompt_generation"], p["text"]["resblocks_1"]
  np.testing.assert_array_equal(vp["attn"]["in_proj"]["kernel"], last["attn"]["in_proj"]["kernel"])
  np.testing.assert_array_equal(vp["mlp"]["c_proj"]["kernel"], last["mlp"]["c_proj"]["kernel"])
  np.testing.assert_array_equal(vp["ln_1_kv"]["scale"], last["ln_1"]["scale"])
  table = sd["token_embedding.weight"]
  np.testing.assert_array_equal(p["prompt_learner"]["ctx"], table[[320, 1125, 539, 320]])
  abstract = converters.expected_variables(config.model)
  params, _ = ckpt_lib.merge_init_from(abstract["params"], {}, variables, "", "clip")
  assert jax.tree.structure(params) == jax.tree.structure(abstract["params"])


def _fake_omegaconf() -> dict[str, types.ModuleType]:
  """Modules with omegaconf's class names whose objects pickle as OmegaConf 2.x's do
  (state dicts with `_metadata`, `_parent`, `_content` / `_val`)."""
  import collections  # pylint: disable=import-outside-toplevel
  import typing  # pylint: disable=import-outside-toplevel
  mods = {n: types.ModuleType(n) for n in ("omegaconf", "omegaconf.base", "omegaconf.nodes",
                                           "omegaconf.dictconfig", "omegaconf.listconfig")}

  def cls(module, name, body):
    c = type(name, (), body)
    c.__module__ = module
    setattr(mods[module], name, c)
    return c

  container_meta = cls("omegaconf.base", "ContainerMetadata", {})
  node_meta = cls("omegaconf.base", "Metadata", {})
  any_node = cls("omegaconf.nodes", "AnyNode", {})
  dict_config = cls("omegaconf.dictconfig", "DictConfig", {})
  list_config = cls("omegaconf.listconfig", "ListConfig", {})

  def meta(kind, key=None):
    m = kind()
    m.__dict__.update(ref_type=typing.Any, object_type=dict, optional=True, key=key, flags={},
                      resolver_cache=collections.defaultdict(dict))
    return m

  def wrap(value, key=None):
    if isinstance(value, dict):
      c = dict_config()
      c.__dict__.update(_metadata=meta(container_meta, key), _parent=None,
                        _content={k: wrap(v, k) for k, v in value.items()})
    elif isinstance(value, list):
      c = list_config()
      c.__dict__.update(_metadata=meta(container_meta, key), _parent=None,
                        _content=[wrap(v, i) for i, v in enumerate(value)])
    else:
      c = any_node()
      c.__dict__.update(_metadata=meta(node_meta, key), _parent=None, _val=value)
    return c

  mods["omegaconf"].wrap = wrap
  return mods


@pytest.mark.slow
def test_released_checkpoint_through_the_cli(tmp_path):
  """A training checkpoint as TC-CLIP saves it ('module.' keys, the training classes'
  prompt buffers, a pickled OmegaConf config, optimiser state) converts with the CLI for
  other class names, without omegaconf installed; CLIP's file gives the token table."""
  torch = pytest.importorskip("torch")
  from converters.torch_io import load_checkpoint_plain  # pylint: disable=import-outside-toplevel
  from torch_references import tc_clip as ref_mod  # pylint: disable=import-outside-toplevel
  from vidjax.checkpoint import load_variables  # pylint: disable=import-outside-toplevel
  config = load_config("tc_clip", "smoke")
  ref = ref_mod.tc_clip(config, None, seed=5, with_token_embedding=False)
  fake = _fake_omegaconf()
  saved = dict(sys.modules)
  sys.modules.update(fake)
  try:
    settings = fake["omegaconf"].wrap({"context_length": 30, "trainer": {"lr_10x": True},
                                       "seeds": [1024, 1025], "resume": None})
    torch.save({"model": {"module." + k: v for k, v in ref.state_dict().items()},
                "optimizer": {"state": {}, "param_groups": [{"lr": 8e-6}]},
                "max_accuracy": 82.1, "epoch": 9, "config": settings},
               tmp_path / "tc.pth")
  finally:
    for name in fake:
      if saved.get(name) is None:
        sys.modules.pop(name, None)
  assert "omegaconf" not in sys.modules
  loaded = load_checkpoint_plain(str(tmp_path / "tc.pth"))
  assert loaded["config"] == {"context_length": 30, "trainer": {"lr_10x": True},
                              "seeds": [1024, 1025], "resume": None}
  assert "module.prompt_learner.token_suffix" in loaded["model"]
  table = ref._table[0].weight.detach()   # pylint: disable=protected-access
  torch.save({"token_embedding.weight": table}, tmp_path / "clip.pth")
  out = tmp_path / "out"
  cmd = [sys.executable, "-m", "converters", "--source", "tc_clip",
         "--config", os.path.join(ROOT, "configs", "tc_clip.py:smoke"),
         "--checkpoint", str(tmp_path / "tc.pth"), "--clip_checkpoint", str(tmp_path / "clip.pth"),
         "--output", str(out), "--config.model.class_names=('JumpingJack', 'brush_hair')",
         "--config.model.num_classes=2"]
  env = dict(os.environ, PYTHONPATH=ROOT)
  done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  variables = load_variables(str(out))
  np.testing.assert_array_equal(variables["params"]["text"]["token_embedding"]["embedding"],
                                table.numpy())
  np.testing.assert_array_equal(variables["params"]["prompt_learner"]["ctx"],
                                ref.prompt_learner.ctx.detach().numpy())


def _split_files(folder, name: str, rows, classes, names) -> tuple[str, str]:
  """An annotation list of `rows` ((path, label)) whose labels are in `classes`, relabelled
  0.. in that order, and the label file of their names: (list, label file)."""
  index = {c: i for i, c in enumerate(classes)}
  (folder / f"{name}.txt").write_text("".join(f"{p} {index[l]}\n" for p, l in rows if l in index))
  (folder / f"{name}_labels.txt").write_text("".join(names[c] + "\n" for c in classes))
  return str(folder / f"{name}.txt"), str(folder / f"{name}_labels.txt")


def _splits_script():
  import importlib.util  # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location("tc_clip_splits",
                                                os.path.join(ROOT, "scripts", "tc_clip_splits.py"))
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  return script


# --- every protocol trains and is evaluated as it says ---------------------------------
# Each protocol's recipe (configs/tc_clip.py variants, towers shrunk to the smoke model's,
# so the compiled programs repeat) trains two steps on generated videos with class names.

@pytest.fixture(scope="module")
def protocol_videos(tmp_path_factory):
  """(folder, {"train": 24 rows, "eval": 12 rows}) of (path, label) demo videos."""
  from vidjax.data import demo  # pylint: disable=import-outside-toplevel
  videos = tmp_path_factory.mktemp("videos")
  rows = {}
  for split, n in (("train", 24), ("eval", 12)):
    listed = demo.write_video_files(str(videos), split=split, num_examples=n, num_frames=8,
                                    image_size=32, seed=4)
    rows[split] = [(p, int(l)) for p, l in (x.rsplit(" ", 1) for x in
                                            open(listed).read().splitlines())]
  return videos, rows


def _train_protocol(protocol_videos, tmp_path, variant, train_rows, classes, *,
                    label_file=None, dtype="float32", **changes):
  """Two steps of the protocol's recipe on `classes`; eval on their validation videos.
  Returns (config, workdir, final metrics)."""
  from vidjax.data import demo  # pylint: disable=import-outside-toplevel
  from vidjax.train import trainer  # pylint: disable=import-outside-toplevel
  videos, rows = protocol_videos
  names = list(demo.CLASS_NAMES)
  config = load_config("tc_clip", variant)
  assert config.model.dtype == "bfloat16"   # the recipes compute as upstream's AMP
  tc_recipe.tiny_model(config)
  config.model.dtype = dtype
  train_list, labels = _split_files(videos, f"{variant}_train", train_rows, classes, names)
  eval_list, _ = _split_files(videos, f"{variant}_val", rows["eval"], classes, names)
  config.data.update(name="files", format="videos", root=str(videos), train_list=train_list,
                     eval_list=eval_list, label_names=labels, num_classes=len(classes),
                     num_frames=2, image_size=32, train_resize=36, test_scale=32,
                     num_threads=1, prefetch=1)
  config.model.label_file = label_file or labels
  config.update(batch_size=4, grad_accum_steps=1, total_steps=2, log_every_steps=1,
                checkpoint_every_steps=2, **changes)
  config.eval.batch_size = 4
  workdir = str(tmp_path / variant.replace(",", "_"))
  return config, workdir, trainer.run(config, workdir)


def _evaluate_splits(protocol_videos, capsys, variant, workdir, groups):
  """scripts/tc_clip_splits.py on the run's best checkpoint; the printed summary, and each
  split's top-1 recomputed from its own scores file."""
  from vidjax.data import demo  # pylint: disable=import-outside-toplevel
  from vidjax.train import eval_outputs  # pylint: disable=import-outside-toplevel
  videos, rows = protocol_videos
  names = list(demo.CLASS_NAMES)
  args = []
  for i, (group, classes) in enumerate(groups):
    eval_list, labels = _split_files(videos, f"{variant}_{group}{i}", rows["eval"], classes,
                                     names)
    args += ["--split", f"{group}={eval_list}:{labels}"]
  out = os.path.join(workdir, "splits")
  assert _splits_script().main(["--config", workdir, "--checkpoint",
                                os.path.join(workdir, "best"), "--workdir", out, *args]) == 0
  summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  for i, (group, classes) in enumerate(groups):
    folder = os.path.join(out, f"{group}_{i}", "eval")
    (path,) = [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith("_scores.npz")]
    data = eval_outputs.load_scores(path)
    assert data["scores"].shape == (2 * len(classes), len(classes))
    assert data["class_names"].tolist() == [names[c] for c in classes]
    top1 = eval_outputs.accuracies(data["scores"], data["labels"])["top1"]
    assert summary["splits"][i]["top1"] == pytest.approx(top1)
  return summary


@pytest.mark.slow
def test_zero_shot_is_evaluated_on_three_splits_of_other_classes(protocol_videos, tmp_path,
                                                                 capsys):
  """Trained on 4 classes, tested on three class lists of 2 unseen classes: mean, std."""
  config, workdir, got = _train_protocol(protocol_videos, tmp_path, "zero_shot",
                                         protocol_videos[1]["train"], range(4))
  assert (config.eval.num_views, config.data.test_clips, config.optim.lr) == (2, 2, 8e-6)
  assert np.isfinite(got["eval/loss"]) and 0.0 <= got["eval/top1"] <= got["eval/top5"] <= 1.0
  summary = _evaluate_splits(protocol_videos, capsys, "zero_shot", workdir,
                             [("unseen", (4, 5)), ("unseen", (0, 5)), ("unseen", (1, 4))])
  tops = [100 * r["top1"] for r in summary["splits"]]
  assert summary["groups"]["unseen"] == pytest.approx(
      {"mean": np.mean(tops), "std": np.std(tops), "splits": 3})
  assert "harmonic_mean" not in summary


@pytest.mark.slow
def test_few_shot_keeps_the_best_validation_accuracy(protocol_videos, tmp_path):
  """K=2 shots a class; the best checkpoint holds the best of the evaluations in training."""
  from vidjax.train import checkpoint as ckpt_lib  # pylint: disable=import-outside-toplevel
  from vidjax.train import eval_outputs  # pylint: disable=import-outside-toplevel
  train_rows = protocol_videos[1]["train"]
  shots = [r for c in range(6) for r in [x for x in train_rows if x[1] == c][:2]]
  _, workdir, _ = _train_protocol(protocol_videos, tmp_path, "few_shot,hmdb51,k2", shots,
                                  range(6), eval_every_steps=1)
  best = ckpt_lib.read_best(os.path.join(workdir, "best"))
  per_step = []
  for step in (1, 2):
    (path,) = [os.path.join(workdir, "eval", f) for f in os.listdir(os.path.join(workdir, "eval"))
               if f.startswith(f"step_{step}_") and f.endswith("_scores.npz")]
    data = eval_outputs.load_scores(path)
    per_step.append(eval_outputs.accuracies(data["scores"], data["labels"])["top1"])
  assert best["metric"] == "eval/top1" and best["value"] == pytest.approx(max(per_step))
  assert per_step[best["step"] - 1] == pytest.approx(max(per_step))


@pytest.mark.slow
def test_base_to_novel_reports_the_harmonic_mean(protocol_videos, tmp_path, capsys):
  """Base classes 0..3 for training; base and novel validation after."""
  _, workdir, _ = _train_protocol(protocol_videos, tmp_path, "base2novel,ucf101,s1",
                                  protocol_videos[1]["train"], range(4))
  summary = _evaluate_splits(protocol_videos, capsys, "base2novel", workdir,
                             [("base", range(4)), ("novel", (4, 5))])
  b, n = summary["groups"]["base"]["mean"], summary["groups"]["novel"]["mean"]
  assert summary["harmonic_mean"] == pytest.approx(2 * b * n / (b + n) if b + n else 0.0)


@pytest.mark.slow
def test_fully_supervised_trains_in_bfloat16_and_tests_twelve_views(protocol_videos, tmp_path):
  """All classes, tested with 4 clips x 3 crops, in the recipes' bfloat16 (the trainer
  stops at a non-finite loss or gradient, so finishing means finite ones)."""
  from vidjax.train import eval_outputs  # pylint: disable=import-outside-toplevel
  config, workdir, got = _train_protocol(protocol_videos, tmp_path, "fully_supervised",
                                         protocol_videos[1]["train"], range(6),
                                         dtype="bfloat16")
  assert (config.eval.num_views, config.data.test_crop) == (12, "three_crop")
  assert np.isfinite(got["eval/loss"])
  (path,) = [os.path.join(workdir, "eval", f) for f in os.listdir(os.path.join(workdir, "eval"))
             if f.endswith("_scores.npz")]
  data = eval_outputs.load_scores(path)
  assert data["scores"].shape == (12, 6)
  assert got["eval/top1"] == pytest.approx(
      eval_outputs.accuracies(data["scores"], data["labels"])["top1"])


@pytest.mark.slow
def test_llm_variant_trains_on_class_descriptions(protocol_videos, tmp_path):
  """FROSTER-style "Name: description" entries (upstream's JSON layout) as the prompts,
  77 tokens; trained as zero-shot is."""
  from vidjax.data import demo  # pylint: disable=import-outside-toplevel
  names = list(demo.CLASS_NAMES)
  described = tmp_path / "llm_labels.json"
  described.write_text(json.dumps({str(c): f"{names[c]}: a clip of a shape, "
                                   f"{names[c].replace('_', ' ')}." for c in range(4)}))
  config, _, got = _train_protocol(protocol_videos, tmp_path, "zero_shot,llm",
                                   protocol_videos[1]["train"], range(4),
                                   label_file=str(described))
  cfg = models.resolve_model_config(config.model)
  assert cfg.context_length == 77
  assert all("a clip of a shape" in p for p in recognizer.prompts(cfg))
  assert np.isfinite(got["eval/loss"]) and 0.0 <= got["eval/top1"] <= 1.0


def test_recorded_choices_and_forcing_shapes():
  """What the blocks sow (traced, not run): per block the seeds [B, T, k] and per merge
  step the order and destinations; a replay of the wrong shape is one clear error."""
  config = load_config("tc_clip", "smoke")
  module = models.build_model(config.model)
  clips = jax.ShapeDtypeStruct((2, 4, 32, 32, 3), jnp.uint8)
  variables = converters.expected_variables(config.model)
  _, state = jax.eval_shape(lambda v, x: module.apply(v, x, mutable=["intermediates"]),
                            variables, clips)
  sown = state["intermediates"]["visual"]
  assert sorted(sown) == ["resblocks_0", "resblocks_1"]
  block = sown["resblocks_1"]
  assert block["seeds"][0].shape == (2, 4, 4) and block["seed_scores"][0].shape == (2, 4, 16)
  # 16 seeds -> 6 context tokens in steps of [4, 4, 2]: 8, 6 and 4 even tokens.
  assert [a.shape for a in block["merge_order"]] == [(2, 8), (2, 6), (2, 4)]
  assert [a.shape for a in block["merge_dest"]] == [(2, 8), (2, 6), (2, 4)]
  forced = jax.tree.map(lambda a: np.zeros(a.shape, np.int32), {
      b: {k: sown[b][k] for k in ("seeds", "merge_order", "merge_dest")} for b in sown})
  logits = jax.eval_shape(lambda v, x: module.apply(v, x, decisions=forced), variables, clips)
  assert logits.shape == (2, 6)
  with pytest.raises(ValueError, match=r"resblocks_0: seeds\[0\] has shape \(2, 4, 4\), "
                     r"expected \(1, 4, 4\)"):
    jax.eval_shape(lambda v, x: module.apply(v, x, decisions=forced), variables,
                   jax.ShapeDtypeStruct((1, 4, 32, 32, 3), jnp.uint8))
