"""Shared test helpers: configs loaded from configs/, float32 'highest' matmuls, one
persistent compilation cache for the session."""

import fcntl
import importlib.util
import json
import os
import shutil
import tempfile

import jax
import ml_collections
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Compiles are most of the suite's time and its runs are a few steps: LLVM's level 0 and
# XLA's classic CPU emitters (no fusion emitters) compile fastest. Tests that compare runs
# compare runs of the same settings; the learning tests, whose budgets were measured with
# XLA's defaults at level 1, ask for them in their configs' xla_options (LEARNING_XLA_CPU).
# Set before JAX starts its backend; the xdist workers and subprocesses inherit them.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = " ".join(
      [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0",
       "--xla_cpu_use_fusion_emitters=false"]).strip()
# The XLA CPU settings the learning budgets were measured with (tests/test_learning.py).
LEARNING_XLA_CPU = {"xla_backend_optimization_level": 1, "xla_cpu_use_fusion_emitters": True}
# XLA's default CPU emitters: for tests that compare two different programs (a model with
# and without identity hooks, with and without remat) to float32 rounding.
DEFAULT_EMITTERS = {"xla_cpu_use_fusion_emitters": True}

# PyTorch's OpenMP threads, beside XLA's pool and the other xdist worker, oversubscribe the
# cores: the references (and subprocesses) run single-threaded unless the caller says not.
os.environ.setdefault("OMP_NUM_THREADS", "1")

jax.config.update("jax_default_matmul_precision", "highest")

# One persistent compilation cache for the session, its xdist workers and their
# subprocesses (vidjax.main runs, distributed workers, which inherit the variable): the
# smoke model's identical programs compile once (train-loop and distributed tests: 204 s
# -> 158 s). A cache the caller set is used as it is and kept.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="vidjax-tests-xla-cache-")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])


def pytest_unconfigure(config):
  del config
  if _OWN_CACHE:
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


def shared_run(tmp_path_factory, name: str, run) -> tuple[str, object]:
  """A directory made once per test session and shared by the pytest-xdist workers (a
  smoke training run several tests read): the first worker to ask calls `run(directory)`
  (its JSON-able result is kept) under a file lock while the others wait, then reuse it.
  Returns (directory, result). The tests must only read the directory."""
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent   # the session's directory above each worker's
  directory, done = root / name, root / f"{name}.json"
  with open(root / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not done.exists():
      shutil.rmtree(directory, ignore_errors=True)
      directory.mkdir()
      result = run(str(directory))
      done.write_text(json.dumps(result))
  return str(directory), json.loads(done.read_text())


def load_config(name: str, variant: str = "", **overrides) -> ml_collections.ConfigDict:
  """configs/NAME.py's get_config(variant), with dotted-path overrides."""
  path = os.path.join(ROOT, "configs", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"_config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(variant)
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def subprocess_env(**extra) -> dict:
  env = dict(os.environ)
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  env.update(extra)
  return env


@pytest.fixture
def config_loader():
  return load_config


def write_class_folders(root: str, classes: tuple[str, ...] = ("jumping jacks", "push_up", "run"),
                        per_split: tuple[tuple[str, int], ...] = (("train", 12), ("val", 6)),
                        num_frames: int = 8) -> str:
  """Real mp4 files `root/SPLIT/CLASS/vNN.mp4` in three sizes (32x40, 48x48, 40x48),
  of the demo data set's first classes (folder c holds demo class c); returns root."""
  from vidjax.data import demo  # pylint: disable=import-outside-toplevel
  codec = demo._video_codec()  # pylint: disable=protected-access
  sizes = ((32, 40), (48, 48), (40, 48))
  for split, n in per_split:
    for i in range(n):
      label = i % len(classes)
      clip, _ = demo.make_clip(demo.NUM_CLASSES * i + label, seed=0, split=split,
                               num_frames=num_frames, image_size=48)
      h, w = sizes[i % len(sizes)]
      folder = os.path.join(root, split, classes[label])
      os.makedirs(folder, exist_ok=True)
      demo._write_mp4(os.path.join(folder, f"v{i:02d}.mp4"), clip[:, :h, :w], 8, codec)  # pylint: disable=protected-access
  return root


def pytest_collection_modifyitems(config, items):
  """The slow tests first, the learning runs (2D and 3D) first of all: pytest-xdist hands
  out tests in this order, one at a time (`--maxschedchunk=1` in pyproject.toml), so the
  two workers end together instead of one finishing a long test alone at the end."""
  del config

  def rank(item) -> int:
    if item.nodeid.startswith(("tests/test_learning", "test_learning")):
      return 0
    return 1 if item.get_closest_marker("slow") else 2

  items.sort(key=rank)
