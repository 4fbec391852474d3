"""Shared test helpers: configs loaded from configs/, float32 'highest' matmuls, one
persistent compilation cache for the session."""

import importlib.util
import os
import shutil
import sys
import tempfile

import jax
import ml_collections
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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
