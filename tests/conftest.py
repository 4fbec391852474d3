"""Shared test helpers: configs loaded from configs/, float32 'highest' matmuls."""

import importlib.util
import os
import sys

import jax
import ml_collections
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

jax.config.update("jax_default_matmul_precision", "highest")


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
