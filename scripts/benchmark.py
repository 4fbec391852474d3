"""Benchmark a config's model: train step and inference throughput against PyTorch.

For the model of `--config` (at the config's frames and image size, or --frames/--size)
this measures, on the devices of the config's mesh (the batch split over them):

  * train step: the trainer's own jitted step (optimiser of the config, donated state),
    clips/s over timed steps after warm-up;
  * inference: `model.apply(variables, clips, train=False)` under jax.jit, clips/s;
    the clips sharded over the mesh's batch axes, the variables replicated;
  * compile time of each, FLOPs per clip from XLA's cost analysis of the lowered
    program (on GPU, where it gives none, of the compiled one: cuDNN's convolutions are
    left out, so count on CPU), utilisation against
    --peak-tflops, XLA's memory estimate (arguments + outputs + temporaries) and the
    peak device memory (GPU) or the process's peak RSS (CPU).

With --compare-torch the same architecture runs through its PyTorch reference (the
parity references of tests/torch_references/: TSN from tsm.py, TCPNet from tcpnet.py) on
the CPU in the same run: the reference's random weights are converted into the JAX
model (the script prints the logit difference, proving it is the same network), and
the two are timed in alternating rounds, so that the ratio (JAX / PyTorch throughput)
sees the same machine load. The median over rounds is reported.

  python scripts/benchmark.py --config configs/tsn_r50.py --compare-torch
  python scripts/benchmark.py --config configs/tcp_tsn_r50.py --compare-torch --batch 1
  python scripts/benchmark.py --config configs/tsn_r50.py:smoke --profile /tmp/trace

`--matmul-peak N` times an N x N float32 matmul in each framework, the device's practical
peak, and reports each mode's FLOP rate as a share of it.
Inference options (--fold-bn) and XLA flags (--xla-flags) are measured the same way;
`--no-batchnorm` makes every BatchNorm the identity in both frameworks, a diagnostic that
shows what the rest of the step (convolutions, ReLUs, sums, optimiser) costs each;
`--json FILE` writes every figure for tables. `--threads N` pins the whole process (both
frameworks) to N CPUs; on a shared CPU, `--threads 1` gives the steadiest ratios.
`--cpu-devices N` splits the CPU backend into N devices (`config.cpu_devices`), e.g. one
per core, and the batch (default: one clip per device) over them; a batch the devices do
not divide (`--batch 1`) has its frames split over them, for inference (`--modes infer`),
as the eval loop does. The
steps compile with the config's options for the running backend, as in training: the
train step with `xla_options` (on CPU: YNNPACK also fuses the elementwise ops), inference
with `eval.xla_options` (on CPU: XLA's own fusions). `--set xla_options.cpu={}` measures
XLA's defaults for the train step.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog=__doc__.split("\n\n", 1)[1])
  p.add_argument("--config", required=True, help="configs/NAME.py[:VARIANT]")
  p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                 help="config overrides, e.g. model.dtype=bfloat16 (values parsed as JSON "
                      "when they parse, else strings)")
  p.add_argument("--batch", type=int, default=0,
                 help="clips per step, for both frameworks (default: one per device)")
  p.add_argument("--frames", type=int, default=0, help="T (default: the config's)")
  p.add_argument("--size", type=int, default=0, help="H = W (default: the config's)")
  p.add_argument("--modes", default="infer,train", help="infer,train (default both)")
  p.add_argument("--steps", type=int, default=3, help="timed calls per round (default 3)")
  p.add_argument("--rounds", type=int, default=3,
                 help="alternating JAX/PyTorch rounds; medians are reported (default 3)")
  p.add_argument("--compare-torch", action="store_true",
                 help="also time the PyTorch reference and report the ratio")
  p.add_argument("--threads", type=int, default=0,
                 help="N: pin the process (both frameworks) to N CPUs; 1 gives the comparison "
                      "least disturbed by other processes on a shared host (default: all)")
  p.add_argument("--cpu-devices", type=int, default=0, metavar="N",
                 help="the CPU backend as N devices, -1 one per core (config.cpu_devices; "
                      "default: the config's, JAX's one device when 0)")
  p.add_argument("--fold-bn", action="store_true",
                 help="inference with BatchNorm folded into the preceding convolutions")
  p.add_argument("--no-batchnorm", action="store_true",
                 help="diagnostic: every BatchNorm returns its input, in the JAX model and "
                      "in the PyTorch reference (their variables stay), to time the rest "
                      "of each step")
  p.add_argument("--peak-tflops", type=float, default=0.0,
                 help="the device's peak, for utilisation (e.g. 989 for H100 bf16 dense)")
  p.add_argument("--matmul-peak", type=int, default=0, metavar="N",
                 help="also time an N x N matmul in JAX (and PyTorch with "
                      "--compare-torch): the device's practical peak, against which each "
                      "mode's FLOP rate is reported (e.g. 2048; default off)")
  p.add_argument("--matmul-dtype", default="float32", choices=("float32", "bfloat16"),
                 help="the dtype of --matmul-peak's matmul (bfloat16 for a bf16 model on an "
                      "accelerator; default float32)")
  p.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS before JAX starts")
  p.add_argument("--profile", default="", help="write a JAX profiler trace to this dir")
  p.add_argument("--json", default="", help="write the results to this file")
  return p.parse_args(argv)


def load_config(spec: str, overrides: list[str]):
  path, _, variant = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("_bench_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(variant)
  for item in overrides:
    key, _, raw = item.partition("=")
    try:
      value = json.loads(raw)
    except json.JSONDecodeError:
      value = raw
    *parents, leaf = key.split(".")
    node = config
    for name in parents:
      node = node[name]
    node[leaf] = tuple(value) if isinstance(value, list) else value
  return config


# ---------------------------------------------------------------------------- torch
# Clip-model references: backbone name -> (module of tests/torch_references/, builder,
# converter source). A builder is `(config, clip [B, T, H, W, 3] uint8, seed) -> reference
# in eval mode` (random weights, calibrated BatchNorm) that takes `to_torch_input(clip)`.
CLIP_REFERENCES = {
    "resnet3d": ("mmaction2", "recognizer", "mmaction2"),
    "c2d": ("mmaction2", "recognizer", "mmaction2"),
    "slowfast": ("mmaction2", "slowfast", "mmaction2"),
    "cost": ("cost", "recognizer", "cost"),
    "csn": ("mmaction2", "csn_recognizer", "mmaction2"),
    "r2plus1d": ("mmaction2", "r2plus1d_recognizer", "mmaction2"),
}


def torch_reference(config, clips: np.ndarray):
  """(reference module, converter source, torch input, calibrated) for `config.model`.

  The references are the parity tests' own (upstream state_dict layouts): TSN with a
  ResNet-18/50, TCPNet with a ResNet-50, and the clip models of `CLIP_REFERENCES`
  (`calibrated`: their builder already set the BatchNorm statistics).
  """
  for path in (ROOT, os.path.join(ROOT, "tests")):
    if path not in sys.path:
      sys.path.insert(0, path)
  import torch  # pylint: disable=import-outside-toplevel
  from vidjax.models import resolve_model_config  # pylint: disable=import-outside-toplevel
  m = resolve_model_config(config.model)
  b, t = clips.shape[:2]
  if m.backbone.name in CLIP_REFERENCES:
    module, builder, source = CLIP_REFERENCES[m.backbone.name]
    # pylint: disable-next=import-outside-toplevel
    from torch_references.common import to_torch_input
    ref = getattr(importlib.import_module(f"torch_references.{module}"), builder)(
        config, clips, 0)
    return ref, source, to_torch_input(clips), True
  if m.backbone.name != "resnet" or m.backbone.depth not in (18, 50):
    raise SystemExit(f"--compare-torch: no PyTorch reference for backbone "
                     f"{m.backbone.name}-{m.backbone.depth} (references: resnet 18, 50, "
                     f"{', '.join(CLIP_REFERENCES)}).")
  if m.head.name == "tsn":
    if any(m.get(k, {}).get("enabled", False) for k in m.keys()
           if hasattr(m.get(k), "get")):
      raise SystemExit("--compare-torch: the TSN reference has no temporal modules.")
    from torch_references.tsm import tsn_resnet  # pylint: disable=import-outside-toplevel
    ref, source = tsn_resnet(m.num_classes, t, m.backbone.depth, m.head.dropout_rate), "tsm"
    mean, std = m.pixel_mean, m.pixel_std
  elif m.head.name == "tcp" and m.backbone.depth == 50:
    from torch_references.tcpnet import tcp_tsn_r50  # pylint: disable=import-outside-toplevel
    ref, source = tcp_tsn_r50(m.num_classes, t, m.head.dropout_rate), "tcpnet"
    mean, std = m.pixel_mean, m.pixel_std
  else:
    raise SystemExit(f"--compare-torch: no PyTorch reference for head {m.head.name!r}.")
  x = (clips.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
  x = torch.from_numpy(np.ascontiguousarray(
      x.transpose(0, 1, 4, 2, 3).reshape(b, t * 3, *clips.shape[2:4])))
  return ref, source, x, False


def torch_fns(ref, x, labels: np.ndarray, config) -> tuple[Callable, Callable]:
  """(inference call, train step) of the reference: SGD with the config's momentum and
  weight decay, gradient clipping when the config clips."""
  import torch  # pylint: disable=import-outside-toplevel
  y = torch.from_numpy(labels.astype(np.int64))
  opt = torch.optim.SGD(ref.parameters(), lr=1e-4, momentum=config.optim.get("momentum", 0.9),
                        weight_decay=config.optim.get("weight_decay", 0.0))
  clip = config.optim.get("clip_grad_norm", 0.0)

  def infer():
    ref.eval()
    with torch.no_grad():
      return ref(x)

  def train():
    ref.train()
    loss = torch.nn.functional.cross_entropy(ref(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
      torch.nn.utils.clip_grad_norm_(ref.parameters(), clip)
    opt.step()
    return loss

  return infer, train


def torch_without_batchnorm(module) -> None:
  """Replaces every BatchNorm of `module` (recursively) by `torch.nn.Identity`."""
  import torch  # pylint: disable=import-outside-toplevel
  for name, child in module.named_children():
    if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):  # pylint: disable=protected-access
      setattr(module, name, torch.nn.Identity())
    else:
      torch_without_batchnorm(child)


# ---------------------------------------------------------------------------- jax
def batchnorm_as_identity():
  """A context in which every vidjax `BatchNorm` applied (not initialised) returns its
  input: the traced programs keep the BatchNorm variables but not their work."""
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  from vidjax.models import layers  # pylint: disable=import-outside-toplevel

  def identity(next_fun, args, kwargs, context):
    if (isinstance(context.module, layers.BatchNorm) and context.method_name == "__call__"
        and not context.module.is_initializing()):
      return args[0]
    return next_fun(*args, **kwargs)

  return nn.intercept_methods(identity)


def compile_timed(fn, *args, num_devices: int = 1):
  """(compiled, seconds to lower and compile, cost analysis dict, memory analysis); the
  cost's "flops" are the whole program's, over all `num_devices`."""
  from vidjax.train import xla_options  # pylint: disable=import-outside-toplevel
  t0 = time.perf_counter()
  lowered = fn.lower(*args)
  compiled = lowered.compile()
  seconds = time.perf_counter() - t0
  # The lowered (global, unpartitioned) program's count where the backend gives one (CPU);
  # else the compiled one's per device, which on GPU leaves out cuDNN's convolutions.
  cost = {**xla_options.cost_analysis(lowered), "flops_source": "lowered"}
  if not cost.get("flops"):
    cost = xla_options.cost_analysis(compiled)
    cost = {**cost, "flops": cost.get("flops", 0) * num_devices, "flops_source": "compiled"}
  try:
    memory = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except  # not every backend has one
    memory = None
  return compiled, seconds, cost, memory


def memory_bytes(memory) -> int:
  if memory is None:
    return 0
  return int(sum(getattr(memory, f, 0) for f in (
      "argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")) -
             getattr(memory, "alias_size_in_bytes", 0))


def timed(fn: Callable[[], Any], steps: int, block: Callable[[Any], Any]) -> float:
  """Seconds per call, over `steps` calls (the last result waited for)."""
  t0 = time.perf_counter()
  out = None
  for _ in range(steps):
    out = fn()
  block(out)
  return (time.perf_counter() - t0) / steps


def main(argv=None) -> dict:
  args = parse_args(argv)
  if args.fold_bn and args.no_batchnorm:
    raise SystemExit("--fold-bn and --no-batchnorm: there is no BatchNorm left to fold.")
  flags = args.xla_flags
  if args.threads:
    # Pinning the process is what limits XLA:CPU: its thread pools size themselves by
    # the CPUs the process may run on (XLA flags alone leave YNNPACK's pool at 2).
    cpus = sorted(os.sched_getaffinity(0))
    if args.threads > len(cpus):
      raise SystemExit(f"--threads {args.threads}: this process may use {len(cpus)} CPUs.")
    os.sched_setaffinity(0, cpus[:args.threads])
  if flags:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()
  sys.path.insert(0, ROOT)
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from vidjax import models  # pylint: disable=import-outside-toplevel
  from vidjax.train import optim, sharding, trainer, xla_options  # pylint: disable=import-outside-toplevel

  config = load_config(args.config, args.set)
  if args.cpu_devices:
    config.cpu_devices = args.cpu_devices
  sharding.set_cpu_devices(config.get("cpu_devices", 0))
  mesh = sharding.make_mesh(config.mesh)
  num_devices = mesh.devices.size
  if not args.batch:
    args.batch = sharding.num_batch_shards(mesh)
  t = args.frames or config.data.num_frames
  size = args.size or config.data.image_size
  modes = args.modes.split(",")
  by_frame = sharding.splits_frames(args.batch, t, mesh)
  if by_frame and "train" in modes:
    n = sharding.num_batch_shards(mesh)
    raise SystemExit(f"--batch {args.batch} is not a multiple of the {n} devices, which the "
                     f"train step needs (it splits clips). Use --modes infer (the {t} frames "
                     f"are split) or --batch {n}.")
  try:
    sharding.check_batch_divides(args.batch, mesh, num_frames=0 if "train" in modes else t,
                                 field="--batch")
  except ValueError as e:
    raise SystemExit(str(e)) from None
  if config.model.head.name == "tcp":
    config.model.head.num_segments = t
  config.batch_size = args.batch
  rs = np.random.RandomState(0)
  clips = rs.randint(0, 256, (args.batch, t, size, size, 3)).astype(np.uint8)
  labels = rs.randint(0, config.model.num_classes, (args.batch,)).astype(np.int32)
  device = jax.devices()[0]
  results: dict[str, Any] = {
      "config": args.config, "overrides": args.set, "clip": [args.batch, t, size, size, 3],
      "device": f"{device.platform}: {device.device_kind} x{jax.device_count()}",
      "host": platform.processor() or platform.machine(), "cpus": len(os.sched_getaffinity(0)),
      "load_before": os.getloadavg()[0], "jax": jax.__version__,
      "xla_flags": os.environ.get("XLA_FLAGS", ""), "fold_bn": args.fold_bn,
      "no_batchnorm": args.no_batchnorm,
      "split": "frames" if by_frame else "clips"}

  model = models.build_model(config.model)
  torch_infer = torch_train = None
  if not args.compare_torch:
    variables = jax.jit(model.init)(jax.random.key(0), clips[:1])
  else:
    import converters  # pylint: disable=import-outside-toplevel
    import torch  # pylint: disable=import-outside-toplevel
    if args.threads:
      torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ref, source, x, calibrated = torch_reference(config, clips)
    # Measured BatchNorm statistics keep eval activations O(1): with a fresh module's
    # (0, 1) statistics they shrink layer by layer into denormals, which are slow on
    # CPU for PyTorch (XLA flushes them to zero) and would flatter JAX.
    if not calibrated:
      # pylint: disable-next=import-outside-toplevel
      from torch_references.common import calibrate_batchnorm
      calibrate_batchnorm(ref, x, torch.Generator().manual_seed(0))
    variables = converters.convert(source, ref.state_dict(), config)
    variables = jax.tree.map(jnp.asarray, variables)
    if args.no_batchnorm:
      torch_without_batchnorm(ref)
    torch_infer, torch_train = torch_fns(ref, x, labels, config)
    results["torch"] = f"{torch.__version__}, {torch.get_num_threads()} threads"

  # Inference, compiled with the options the trainer's eval step gets.
  options = xla_options.compiler_options(config.eval.get("xla_options"))
  results["compiler_options"] = {
      "train": xla_options.compiler_options(config.get("xla_options")), "infer": options}
  if args.fold_bn:
    from vidjax.models import fold  # pylint: disable=import-outside-toplevel
    infer_vars, folded = fold.fold_batchnorm(
        variables, float(config.model.get("backbone", {}).get("bn_eps", 1e-5)))
    results["folded_batchnorms"] = len(folded)
    infer_fn = jax.jit(lambda v, c: fold.apply_folded(model, v, folded, c),
                       compiler_options=options)
  else:
    infer_vars = variables
    infer_fn = jax.jit(lambda v, c: model.apply(v, c, train=False), compiler_options=options)
  infer_vars = sharding.tree_replicate(infer_vars, mesh)
  clips_dev = sharding.global_batch({"clip": clips}, mesh, by_frame)["clip"]
  # The interceptor acts while a step is traced, which compile_timed does.
  tracing = batchnorm_as_identity if args.no_batchnorm else contextlib.nullcontext
  if "infer" in modes:
    with tracing():
      compiled, seconds, cost, memory = compile_timed(infer_fn, infer_vars, clips_dev,
                                                      num_devices=num_devices)
    logits = np.asarray(compiled(infer_vars, clips_dev))
    results["infer"] = {"compile_s": seconds, "flops_source": cost["flops_source"],
                        "flops_per_clip": cost.get("flops", 0) / args.batch,
                        "xla_memory_bytes": memory_bytes(memory)}
    if torch_infer is not None:
      ref_logits = torch_infer().numpy()
      results["infer"]["max_logit_diff_vs_torch"] = float(np.abs(logits - ref_logits).max())
      results["infer"]["logit_std"] = float(ref_logits.std())
    infer_call = lambda: compiled(infer_vars, clips_dev)  # noqa: E731

  # Train step: the trainer's state creation and jitted step on all devices.
  if "train" in modes:
    abstract = jax.eval_shape(lambda r: model.init(r, clips[:1]), jax.random.key(0))
    tx, schedule = optim.build_optimizer(
        config.optim, abstract["params"], steps_per_epoch=100,
        frozen=models.frozen_param_mask(config.model, abstract["params"]))
    state, shardings = trainer.create_train_state(config, model, tx, mesh, jax.random.key(0))
    state = state.replace(params=sharding.put(jax.tree.map(np.asarray, variables["params"]),
                                              shardings.params))
    train_fn = trainer.make_train_fn(config, model, tx, schedule, mesh, shardings)
    batch = sharding.global_batch({"clip": clips, "label": labels}, mesh)
    rng = jax.random.key(1)
    with tracing():
      compiled_train, seconds, cost, memory = compile_timed(train_fn, state, batch, rng,
                                                            num_devices=num_devices)
    results["train"] = {"compile_s": seconds, "flops_source": cost["flops_source"],
                        "flops_per_clip": cost.get("flops", 0) / args.batch,
                        "xla_memory_bytes": memory_bytes(memory)}
    holder = {"state": compiled_train(state, batch, rng)[0]}

    def train_call():
      holder["state"], m, _ = compiled_train(holder["state"], batch, rng)
      return m.loss.total

    train_call()

  block = lambda out: jax.block_until_ready(out)  # noqa: E731
  for mode in modes:
    jax_call = infer_call if mode == "infer" else train_call
    torch_call = torch_infer if mode == "infer" else torch_train
    block(jax_call())  # warm-up
    if torch_call is not None:
      torch_call()
    jax_s, torch_s = [], []
    for _ in range(args.rounds):
      jax_s.append(timed(jax_call, args.steps, block))
      if torch_call is not None:
        torch_s.append(timed(torch_call, args.steps, lambda _: None))
    r = results[mode]
    r["jax_clips_per_s"] = args.batch / statistics.median(jax_s)
    r["jax_s_per_step_rounds"] = jax_s
    if r["flops_per_clip"]:
      r["jax_tflops_per_s"] = r["flops_per_clip"] * r["jax_clips_per_s"] / 1e12
      if args.peak_tflops:
        r["utilisation"] = r["jax_tflops_per_s"] / args.peak_tflops
    if torch_s:
      r["torch_clips_per_s"] = args.batch / statistics.median(torch_s)
      r["torch_s_per_step_rounds"] = torch_s
      r["ratio_jax_over_torch"] = statistics.median(
          [ts / js for js, ts in zip(jax_s, torch_s)])

  if args.matmul_peak:
    results["matmul_peak"] = matmul_peak(args.matmul_peak, args.rounds, args.compare_torch,
                                         args.matmul_dtype)
    for mode in modes:
      r = results[mode]
      for who in ("jax", "torch"):
        if f"{who}_clips_per_s" in r and r["flops_per_clip"]:
          r[f"{who}_fraction_of_matmul_peak"] = (
              r["flops_per_clip"] * r[f"{who}_clips_per_s"] / 1e12
              / results["matmul_peak"][f"{who}_tflops_per_s"])

  if args.profile:
    with jax.profiler.trace(args.profile):
      for mode in modes:
        block((infer_call if mode == "infer" else train_call)())
    results["profile"] = args.profile

  stats = device.memory_stats() or {}
  results["peak_device_memory_bytes"] = stats.get("peak_bytes_in_use", 0)
  results["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  results["load_after"] = os.getloadavg()[0]
  print(report(results))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=2)
  return results


def matmul_peak(n: int, rounds: int, with_torch: bool, dtype: str = "float32") -> dict:
  """TFLOP/s of an [n, n] x [n, n] matmul in `dtype`: the practical peak of each framework
  on this device (median of `rounds` timings of 3 calls)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  rs = np.random.RandomState(0)
  a, b = (rs.standard_normal((n, n)).astype(np.float32) for _ in range(2))
  flops = 2.0 * n ** 3
  matmul = jax.jit(jnp.matmul)
  ja, jb = (jax.device_put(v).astype(dtype) for v in (a, b))
  block = lambda out: jax.block_until_ready(out)  # noqa: E731
  block(matmul(ja, jb))
  out = {"n": n, "dtype": dtype, "jax_tflops_per_s": flops / statistics.median(
      [timed(lambda: matmul(ja, jb), 3, block) for _ in range(rounds)]) / 1e12}
  if with_torch:
    import torch  # pylint: disable=import-outside-toplevel
    ta, tb = (torch.from_numpy(v).to(getattr(torch, dtype)) for v in (a, b))
    torch.mm(ta, tb)
    out["torch_tflops_per_s"] = flops / statistics.median(
        [timed(lambda: torch.mm(ta, tb), 3, lambda _: None) for _ in range(rounds)]) / 1e12
  return out


def report(r: dict) -> str:
  lines = [f"{r['config']} {' '.join(r['overrides'])} clips {r['clip']} on {r['device']} "
           f"({r['host']}, {r['cpus']} CPUs), JAX {r['jax']}"
           + (f", PyTorch {r['torch']}" if "torch" in r else "")
           + f"; load {r['load_before']:.2f} -> {r['load_after']:.2f}"
           + (f"; XLA_FLAGS={r['xla_flags']}" if r["xla_flags"] else "")
           + ("; BN folded" if r["fold_bn"] else "")
           + ("; every BatchNorm the identity" if r.get("no_batchnorm") else "")
           + ("; frames split over the devices" if r.get("split") == "frames" else "")
           + (f"; compiler options {r['compiler_options']}" if r.get("compiler_options") else "")]
  for mode in ("infer", "train"):
    if mode not in r:
      continue
    m = r[mode]
    line = (f"  {mode:5s}: JAX {m['jax_clips_per_s']:.3f} clips/s, compile "
            f"{m['compile_s']:.1f} s, {m['flops_per_clip'] / 1e9:.1f} GFLOP/clip"
            + (" (XLA's count of the compiled program: it leaves out library calls such as "
               "cuDNN's convolutions)" if m.get("flops_source") == "compiled" else "")
            + f", {m.get('jax_tflops_per_s', 0) * 1e3:.1f} GFLOP/s")
    if "utilisation" in m:
      line += f" ({100 * m['utilisation']:.1f}% of peak)"
    line += f", XLA memory {m['xla_memory_bytes'] / 2**20:.0f} MiB per device"
    if "torch_clips_per_s" in m:
      line += (f"; PyTorch {m['torch_clips_per_s']:.3f} clips/s; JAX/PyTorch "
               f"{m['ratio_jax_over_torch']:.2f}x")
    if "jax_fraction_of_matmul_peak" in m:
      line += f"; of the matmul peak: JAX {100 * m['jax_fraction_of_matmul_peak']:.0f}%"
      if "torch_fraction_of_matmul_peak" in m:
        line += f", PyTorch {100 * m['torch_fraction_of_matmul_peak']:.0f}%"
    if "max_logit_diff_vs_torch" in m:
      line += (f" (logits differ by {m['max_logit_diff_vs_torch']:.1e}, std "
               f"{m['logit_std']:.1e})")
    lines.append(line)
  if "matmul_peak" in r:
    p = r["matmul_peak"]
    lines.append(f"  matmul peak ({p['n']}x{p['n']} {p.get('dtype', 'float32')}): JAX "
                 f"{p['jax_tflops_per_s'] * 1e3:.1f} GFLOP/s"
                 + (f", PyTorch {p['torch_tflops_per_s'] * 1e3:.1f} GFLOP/s"
                    if "torch_tflops_per_s" in p else ""))
  lines.append(f"  peak memory: device {r['peak_device_memory_bytes'] / 2**20:.0f} MiB, "
               f"process RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB")
  return "\n".join(lines)


if __name__ == "__main__":
  main()
