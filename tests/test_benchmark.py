"""scripts/benchmark.py end to end on the smoke model, against its PyTorch reference."""

import importlib.util
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT, load_config, subprocess_env
from vidjax import models


@pytest.mark.slow
def test_benchmark_compares_the_same_model_with_torch(tmp_path):
  out = tmp_path / "bench.json"
  proc = subprocess.run(
      [sys.executable, "scripts/benchmark.py", "--config", "configs/tsn_r50.py:smoke",
       "--batch", "2", "--steps", "1", "--rounds", "2", "--compare-torch",
       "--peak-tflops", "1.0", "--matmul-peak", "256", "--fold-bn", "--threads", "1",
       "--cpu-devices", "2", "--profile", str(tmp_path / "trace"), "--json", str(out)],
      cwd=ROOT, env=subprocess_env(JAX_PLATFORMS="cpu"), capture_output=True, text=True,
      timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  r = json.loads(out.read_text())
  # --threads 1 pins the process: XLA and PyTorch both see one CPU, which XLA splits into
  # two devices, one clip each.
  assert r["cpus"] == 1 and r["torch"].endswith(", 1 threads"), (r["cpus"], r["torch"])
  assert r["device"].endswith(" x2") and r["clip"][0] == 2, (r["device"], r["clip"])
  for mode in ("infer", "train"):
    m = r[mode]
    assert m["jax_clips_per_s"] > 0 and m["torch_clips_per_s"] > 0
    assert m["ratio_jax_over_torch"] > 0 and len(m["jax_s_per_step_rounds"]) == 2
    assert m["flops_per_clip"] > 1e6 and 0 < m["utilisation"] < 1
    assert m["compile_s"] > 0 and m["xla_memory_bytes"] > 0
    for who in ("jax", "torch"):  # each framework's rate against its own matmul peak
      assert 0 < m[f"{who}_fraction_of_matmul_peak"] == pytest.approx(
          m["flops_per_clip"] * m[f"{who}_clips_per_s"] / 1e12
          / r["matmul_peak"][f"{who}_tflops_per_s"])
  # BatchNorm folded into the convolutions, the JAX logits still equal the reference's.
  assert r["infer"]["max_logit_diff_vs_torch"] < 1e-4 * max(1.0, r["infer"]["logit_std"])
  # FLOPs per clip are the model's, not one device's share: those of this process's
  # one-device forward (which keeps its BatchNorms: a few more elementwise FLOPs).
  config = load_config("tsn_r50", "smoke")
  model = models.build_model(config.model)
  clips = np.zeros(r["clip"], np.uint8)
  variables = jax.eval_shape(model.init, jax.random.key(0), clips[:1])
  cost = jax.jit(lambda v, c: model.apply(v, c, train=False)).lower(
      variables, clips).compile().cost_analysis()
  one_device = (cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"] / len(clips)
  assert r["infer"]["flops_per_clip"] == pytest.approx(one_device, rel=0.02)
  # Train FLOPs ~ 3x inference (forward + two backward products).
  assert 2.0 < r["train"]["flops_per_clip"] / r["infer"]["flops_per_clip"] < 4.0
  assert r["peak_rss_bytes"] > 0
  assert list((tmp_path / "trace").rglob("*.xplane.pb"))
  assert "JAX/PyTorch" in proc.stdout


@pytest.mark.slow
def test_benchmark_splits_frames_and_removes_batchnorm_from_both_frameworks(tmp_path):
  """One clip on 2 devices with --no-batchnorm (one run checks both options): inference
  splits the clip's frames; the JAX program loses the BatchNorms' FLOPs, and its logits
  still equal the reference's, so the reference lost its BatchNorms too."""
  out = tmp_path / "bench.json"
  proc = subprocess.run(
      [sys.executable, "scripts/benchmark.py", "--config", "configs/tsn_r50.py:smoke",
       "--batch", "1", "--cpu-devices", "2", "--modes", "infer", "--steps", "1",
       "--rounds", "1", "--compare-torch", "--threads", "1", "--no-batchnorm",
       "--json", str(out)],
      cwd=ROOT, env=subprocess_env(JAX_PLATFORMS="cpu"), capture_output=True, text=True,
      timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  r = json.loads(out.read_text())
  assert r["split"] == "frames" and r["device"].endswith(" x2") and r["clip"][0] == 1
  assert "train" not in r and r["infer"]["jax_clips_per_s"] > 0
  assert "frames split over the devices" in proc.stdout
  assert r["no_batchnorm"] and "every BatchNorm the identity" in proc.stdout
  assert r["infer"]["max_logit_diff_vs_torch"] < 1e-4 * max(1.0, r["infer"]["logit_std"])
  config = load_config("tsn_r50", "smoke")
  model = models.build_model(config.model)
  clips = np.zeros(r["clip"], np.uint8)
  variables = jax.eval_shape(model.init, jax.random.key(0), clips)
  cost = jax.jit(lambda v, c: model.apply(v, c, train=False)).lower(
      variables, clips).compile().cost_analysis()
  with_bn = (cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"]
  # ResNet-18 at 32 px: the BatchNorms are a few percent of the FLOPs.
  assert r["infer"]["flops_per_clip"] < 0.995 * with_bn, (r["infer"]["flops_per_clip"], with_bn)


@pytest.mark.slow
def test_benchmark_compares_a_clip_model_with_its_torch_reference():
  """A 3D model (I3D-R50's smoke member) through the script's clip-model references, in
  this process: the JAX model gets the reference's converted weights and its logits."""
  spec = importlib.util.spec_from_file_location("_benchmark", f"{ROOT}/scripts/benchmark.py")
  benchmark = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(benchmark)
  r = benchmark.main(["--config", "configs/i3d_r50.py:smoke", "--batch", "2", "--modes",
                      "infer", "--steps", "1", "--rounds", "1", "--compare-torch"])
  m = r["infer"]
  assert r["clip"] == [2, 8, 32, 32, 3] and "train" not in r
  assert m["jax_clips_per_s"] > 0 and m["torch_clips_per_s"] > 0 and m["ratio_jax_over_torch"] > 0
  assert m["max_logit_diff_vs_torch"] < 1e-4 * max(1.0, m["logit_std"]), m
