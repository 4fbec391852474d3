"""`python -m vidjax.export`: both artefacts, reloaded without vidjax's model code, give the
probabilities of the model applied in this process."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import model_fixtures
from conftest import ROOT, subprocess_env
from vidjax import export, models, predict, run_config
from vidjax.data import demo

# Two temporal views per clip: the exported input is [B, V, T, S, S, 3].
OVERRIDES = ("data.test_clips=2", "eval.num_views=2")


def _config():
  return run_config.load(os.path.join(ROOT, "configs/tsn_r50.py:smoke"), OVERRIDES)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  root = tmp_path_factory.mktemp("export")
  variables = model_fixtures.save_model(str(root / "ckpt"), _config(), seed=5)
  return str(root / "ckpt"), variables


def _run(*args):
  return subprocess.run([sys.executable, "-m", "vidjax.export", *args], capture_output=True,
                        text=True, cwd=ROOT, timeout=600,
                        env=subprocess_env(JAX_DEFAULT_MATMUL_PRECISION="highest"))


def _reference(variables, clips):
  """Mean over the views of the softmax of the model's logits, computed here [B, K]."""
  model = models.build_model(_config().model)
  b, v = clips.shape[:2]
  logits = jax.jit(lambda w, c: model.apply(w, c, train=False))(
      variables, jnp.asarray(clips.reshape((b * v,) + clips.shape[2:])))
  logits = np.asarray(logits, np.float64).reshape(b, v, -1)
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return (e / e.sum(-1, keepdims=True)).mean(axis=1)


@pytest.mark.slow
def test_exported_artefacts_reproduce_the_model(saved, tmp_path):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  ckpt, variables = saved
  out = tmp_path / "exported"
  proc = _run("--checkpoint", ckpt, "--output", str(out), "--platforms", "cpu")
  assert proc.returncode == 0, proc.stderr
  progress = [l for l in proc.stderr.splitlines() if l.startswith("[")]
  assert [l[:5] for l in progress] == ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"]
  assert sorted(os.listdir(tmp_path)) == ["exported"]   # no OUT.tmp left
  meta = json.loads((out / "export.json").read_text())
  assert meta["input"]["shape"] == ["b", 2, 2, 32, 32, 3]
  assert meta["output"]["shape"] == ["b", 6]
  assert meta["class_names"] == list(demo.CLASS_NAMES)
  assert meta["test_protocol"]["temporal_clips"] == 2

  # Three clips: the symbolic batch takes a size the export never saw.
  clips = np.random.RandomState(1).randint(0, 256, (3, 2, 2, 32, 32, 3)).astype(np.uint8)
  expected = _reference(variables, clips)
  assert np.ptp(expected, axis=0).max() > 1e-2   # the clips' predictions differ

  exported = jax.export.deserialize(bytearray((out / "model.jax_exported").read_bytes()))
  assert str(exported.in_avals[0].shape[0]) == "b"
  np.testing.assert_allclose(np.asarray(exported.call(clips)), expected, atol=1e-5, rtol=0)

  loaded = tf.saved_model.load(str(out / "saved_model"))
  got = loaded.signatures["serving_default"](clips=tf.constant(clips))["probabilities"]
  np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_fixed_batch_size_export_takes_that_batch(saved):
  ckpt, variables = saved
  config = _config()
  model, loaded = predict.load_model(ckpt, config)
  spec = export._input_spec(config, 2)   # pylint: disable=protected-access
  exported = export.export_jax(export.inference_function(config, model, loaded), spec, ["cpu"])
  assert exported.in_avals[0].shape == (2, 2, 2, 32, 32, 3)
  clips = np.random.RandomState(2).randint(0, 256, (2, 2, 2, 32, 32, 3)).astype(np.uint8)
  exported = jax.export.deserialize(exported.serialize())
  np.testing.assert_allclose(np.asarray(exported.call(clips)), _reference(variables, clips),
                             atol=1e-5, rtol=0)


def test_existing_output_is_refused(tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  (out / "keep").write_text("x")
  proc = _run("--checkpoint", str(tmp_path), "--output", str(out))
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      f"error: --output {out} exists: remove it, pass --overwrite or choose another."]
  assert os.listdir(out) == ["keep"]
