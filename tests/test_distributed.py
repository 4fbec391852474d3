"""Two processes on localhost joined by jax.distributed (gloo collectives on CPU) train
like one process on the same global batch, and save one checkpoint together."""

import json
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT, subprocess_env
from test_sharding import assert_close, fixed_batches, flat_params, run_steps, smoke_config
from vidjax.checkpoint import load_variables
from vidjax.train import sharding

pytestmark = pytest.mark.slow

# FSDP over the two processes: parameters are split across hosts, the batch too.
_OVERRIDES = {"mesh": (("fsdp", -1),), "fsdp_min_size": 1024}

_PROCESS = r"""
import json, sys
sys.path.insert(0, "tests")
import jax, ml_collections, numpy as np, flax
pid, num, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
from vidjax.train import sharding
sharding.initialize_distributed(ml_collections.ConfigDict(dict(
    coordinator_address=f"localhost:{port}", num_processes=num, process_id=pid,
    auto=False, cpu_collectives="gloo")))
assert jax.process_count() == num and jax.device_count() == num, jax.devices()
jax.config.update("jax_default_matmul_precision", "highest")
from test_sharding import run_steps, smoke_config
from test_distributed import _OVERRIDES
from vidjax.train import checkpoint as ckpt_lib

config = smoke_config(**_OVERRIDES)
data = np.load(f"{out}/batches.npz")
batches = [{"clip": data[f"clip{i}"], "label": data[f"label{i}"]}
           for i in range(len(data.files) // 2)]
rows = config.batch_size // num  # this process's rows of every global batch
losses, state = run_steps(config, sharding.make_mesh(config.mesh), batches,
                          process_rows=(pid * rows, (pid + 1) * rows))
sharded = sum(not a.is_fully_addressable for a in jax.tree.leaves(state.params))
ckpt = ckpt_lib.Checkpointer(f"{out}/work")  # every process writes its shards
ckpt.save(len(batches), flax.serialization.to_state_dict(state), force=True)
ckpt.wait()
ckpt.close()
json.dump({"losses": losses, "sharded_across_hosts": sharded}, open(f"{out}/p{pid}.json", "w"))
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_train_like_one(tmp_path):
  config = smoke_config(**_OVERRIDES)
  batches = fixed_batches(config)
  np.savez(tmp_path / "batches.npz", **{f"{k}{i}": b[k] for i, b in enumerate(batches)
                                        for k in ("clip", "label")})
  port = str(_free_port())
  env = subprocess_env(JAX_PLATFORMS="cpu")
  procs = [subprocess.Popen([sys.executable, "-c", _PROCESS, str(p), "2", port,
                             str(tmp_path)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for p in range(2)]
  outputs = [p.communicate(timeout=600)[0] for p in procs]
  for p, o in zip(procs, outputs):
    assert p.returncode == 0, o[-4000:]

  # The same global batches through one process and one device.
  losses, state = run_steps(config, sharding.make_mesh(config.mesh, jax.devices()[:1]),
                            batches)
  results = [json.loads((tmp_path / f"p{p}.json").read_text()) for p in range(2)]
  for r in results:
    np.testing.assert_allclose(r["losses"], losses, atol=1e-5, rtol=0)
    assert r["sharded_across_hosts"] > 10  # FSDP really split tensors over the hosts
  assert np.ptp(losses) > 1e-3
  # The checkpoint both processes wrote restores here, on one device.
  restored = load_variables(str(tmp_path / "work"))
  ours = flat_params(state)
  theirs = {f"{c}/{k}": np.asarray(v) for c in ("params", "batch_stats")
            for k, v in flat_params_tree(restored[c]).items()}
  assert_close(theirs, ours)


def flat_params_tree(tree):
  return {sharding.path_name(p): x for p, x in jax.tree_util.tree_leaves_with_path(tree)}
