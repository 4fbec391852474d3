"""Benchmark: iSQRT Newton-Schulz in JAX vs an eigh square root in JAX vs NS in PyTorch.

TCPNet takes the square root of one C x C covariance per clip (C = 128) with 3
Newton-Schulz iterations. This script times, for float32 SPD matrices of several sizes:

  * jax NS     `vidjax.ops.covariance.sqrtm_newton_schulz` under jax.jit;
  * jax eigh   V diag(sqrt(max(w, 0))) V^T from jnp.linalg.eigh, under jax.jit (the exact
               square root; NOT what TCP computes, shown for cost only);
  * torch NS   the same iteration written with torch.bmm (upstream runs it this way).

Each cell: warm-up calls first (compilation, caches), then the median of up to
--repeats timed calls (fewer for large sizes, see --budget). Timings on a shared machine
are noisy: the header prints the load average. Forward only unless
--backward, which adds a forward+backward table (gradient of sum(out * W)).

  python scripts/bench_sqrtm.py                       # default grid, a few minutes on 2 cores
  python scripts/bench_sqrtm.py --dims 128 --batches 32 --repeats 20 --backward

Threads: by default both sides use every core. `--threads 1` runs both single-threaded,
which is far less disturbed by other processes on a busy machine (multi-threaded
barriers stall whenever one thread is descheduled). Matmuls run at
float32 "highest" precision on both sides (PyTorch's default: no TF32).
torch is needed only by this script (`pip install vidjax[torch]`).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Callable

# JAX's CPU eigh calls LAPACK once per matrix; a multi-threaded OpenBLAS under it
# thrashes on small matrices (measured here: 32 x 128^2 eigh, 10 s threaded vs 34 ms with
# one thread on a busy 2-core host). Must be set before numpy/scipy load OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

# jax and vidjax are imported in main(), once --threads has set XLA_FLAGS.
jax = jnp = covariance = None

NUM_ITERS = 3  # as in every TCP release
EPS = 1e-5


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog=__doc__.split("\n\n", 1)[1])
  p.add_argument("--dims", type=int, nargs="+", default=[64, 128, 256],
                 help="matrix sizes d (default: 64 128 256)")
  p.add_argument("--batches", type=int, nargs="+", default=[8, 32, 128, 256],
                 help="batch sizes (default: 8 32 128 256)")
  p.add_argument("--repeats", type=int, default=15,
                 help="timed calls per cell at most; the median is reported (default: 15)")
  p.add_argument("--budget", type=float, default=1.5,
                 help="seconds of timed calls per method and cell; large cells get fewer "
                      "repeats, never fewer than 3 (default: 1.5)")
  p.add_argument("--warmup", type=int, default=1,
                 help="untimed calls first, at least 1 (it compiles) (default: 1)")
  p.add_argument("--threads", type=int, default=None,
                 help="torch.set_num_threads; with 1, JAX's CPU backend is made "
                      "single-threaded too (XLA_FLAGS). Default: all cores on both sides")
  p.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                 help="where both frameworks run (default: cpu; gpu needs CUDA builds of "
                      "jaxlib and torch)")
  p.add_argument("--num-iters", type=int, default=NUM_ITERS,
                 help=f"Newton-Schulz iterations (default: {NUM_ITERS}, as TCP)")
  p.add_argument("--backward", action="store_true",
                 help="also time forward+backward")
  p.add_argument("--no-eigh", action="store_true", help="skip the eigh column (it is slow)")
  return p.parse_args(argv)


# ------------------------------------------------------------------------------ torch side


def torch_newton_schulz(torch, a, num_iters: int, eps: float = EPS):
  """The iSQRT iteration of vidjax.ops.covariance, in batched torch ops ([B, d, d])."""
  d = a.shape[-1]
  i3 = 3.0 * torch.eye(d, dtype=a.dtype, device=a.device).expand_as(a)
  tr = torch.diagonal(a, dim1=-2, dim2=-1).sum(-1).view(-1, 1, 1)
  norm_a = a / (tr + eps)
  z = 0.5 * (i3 - norm_a)
  y = torch.bmm(norm_a, z)
  if num_iters == 1:
    out = y
  else:
    for _ in range(num_iters - 2):
      p = 0.5 * (i3 - torch.bmm(z, y))
      y, z = torch.bmm(y, p), torch.bmm(p, z)
    out = 0.5 * torch.bmm(y, i3 - torch.bmm(z, y))
  return out * torch.sqrt(tr)


# ------------------------------------------------------------------------------- jax side


def jax_eigh_sqrtm(a):
  """Exact symmetric square root: V diag(sqrt(w)) V^T, negative round-off clamped."""
  w, v = jnp.linalg.eigh(a)
  return jnp.matmul(v * jnp.sqrt(jnp.maximum(w, 0.0))[..., None, :], jnp.swapaxes(v, -1, -2))


def random_covariances(rng: np.random.RandomState, batch: int, d: int) -> np.ndarray:
  """[batch, d, d] float32 covariances of 2d Gaussian samples with uneven channel scales."""
  x = rng.randn(batch, 2 * d, d).astype(np.float32) * np.logspace(0, -1.5, d, dtype=np.float32)
  x -= x.mean(axis=1, keepdims=True)
  return np.einsum("bmc,bmd->bcd", x, x) / (2 * d)


# --------------------------------------------------------------------------------- timing


def time_ms(fn: Callable[[], object], sync: Callable[[object], None], warmup: int,
            repeats: int, budget_s: float) -> float:
  """Median wall time of fn() in ms, after `warmup` untimed calls.

  At most `repeats` calls, stopping once `budget_s` is spent with 3 samples in hand; a
  cell whose warm-up call alone took over twice the budget gets a single timed call
  (such calls span many scheduler slices, so one sample is already an average).
  """
  slow = False
  for _ in range(max(warmup, 1)):
    t0 = time.perf_counter()
    sync(fn())
    slow = time.perf_counter() - t0 > 2 * budget_s
  min_samples = 1 if slow else 3
  times = []
  start = time.perf_counter()
  while len(times) < repeats:
    t0 = time.perf_counter()
    sync(fn())
    times.append(time.perf_counter() - t0)
    if len(times) >= min_samples and time.perf_counter() - start > budget_s:
      break
  return 1e3 * statistics.median(times)


def main(argv=None) -> None:
  args = parse_args(argv)
  t_start = time.perf_counter()
  global jax, jnp, covariance
  if args.threads == 1:
    # One core each: the comparison least disturbed by other processes on a shared host.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_cpu_multi_thread_eigen=false"
                               " intra_op_parallelism_threads=1")
  import jax  # noqa: F811
  import jax.numpy as jnp  # noqa: F811
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from vidjax.ops import covariance  # noqa: F811
  if args.num_iters < 1:
    raise SystemExit("--num-iters must be >= 1")
  import torch  # only here: the library never imports torch

  torch.set_num_threads(args.threads or os.cpu_count())
  if args.device == "gpu":
    jax_device = jax.devices("gpu")[0]
    torch_device = torch.device("cuda")
    torch_sync = lambda out: torch.cuda.synchronize()
  else:
    jax_device = jax.devices("cpu")[0]
    torch_device = torch.device("cpu")
    torch_sync = lambda out: None
  jax_sync = jax.block_until_ready
  n = args.num_iters

  # Highest on both sides: PyTorch float32 matmuls do not use TF32 by default either.
  with jax.default_matmul_precision("highest"):
    ns_fwd = jax.jit(lambda a: covariance.sqrtm_newton_schulz(a, n, EPS))
    eigh_fwd = jax.jit(jax_eigh_sqrtm)

    def fwd_bwd(f):
      # Gradient of sum(f(a) * W): one forward and one backward pass.
      return jax.jit(jax.value_and_grad(lambda a, w: jnp.sum(f(a) * w)))

    ns_bwd = fwd_bwd(lambda a: covariance.sqrtm_newton_schulz(a, n, EPS))
    eigh_bwd = fwd_bwd(jax_eigh_sqrtm)

    def torch_bwd(a, w):
      a = a.detach().requires_grad_(True)
      loss = (torch_newton_schulz(torch, a, n) * w).sum()
      loss.backward()
      return a.grad

    cpu = platform.processor() or platform.machine()
    try:
      with open("/proc/cpuinfo") as f:
        cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
      pass
    print(f"# iSQRT benchmark: float32, {n} Newton-Schulz iterations, eps {EPS}")
    jax_threads = "1 thread" if args.threads == 1 else "all cores"
    print(f"# jax {jax.__version__} on {jax_device.device_kind} ({jax_device.platform}), "
          f"{jax_threads}; "
          f"torch {torch.__version__} on {torch_device}, {torch.get_num_threads()} threads; "
          f"host {cpu}, {os.cpu_count()} cores")
    print(f"# median of <= {args.repeats} calls after {max(args.warmup, 1)} warm-up call(s) "
          f"(3 calls or more, 1 for calls over {2 * args.budget:.0f} s; {args.budget:.1f} s "
          f"budget per method and cell); "
          f"load average at start {os.getloadavg()[0]:.2f}\n")

    rng = np.random.RandomState(0)
    fwd_rows, bwd_rows = [], []
    max_diff = 0.0
    for d in args.dims:
      for b in args.batches:
        host = random_covariances(rng, b, d)
        a_jax = jax.device_put(host, jax_device)
        a_torch = torch.from_numpy(host).to(torch_device)
        w_host = rng.randn(b, d, d).astype(np.float32)
        w_jax = jax.device_put(w_host, jax_device)
        w_torch = torch.from_numpy(w_host).to(torch_device)
        timing = lambda fn, sync: time_ms(fn, sync, args.warmup, args.repeats, args.budget)

        t_ns = timing(lambda: ns_fwd(a_jax), jax_sync)
        t_eigh = (float("nan") if args.no_eigh else timing(lambda: eigh_fwd(a_jax), jax_sync))
        with torch.no_grad():
          t_torch = timing(lambda: torch_newton_schulz(torch, a_torch, n), torch_sync)
          ref = torch_newton_schulz(torch, a_torch, n).cpu().numpy()
        ours = np.asarray(ns_fwd(a_jax))
        max_diff = max(max_diff, float(np.abs(ours - ref).max() / np.abs(ref).max()))
        fwd_rows.append((d, b, t_ns, t_eigh, t_torch))

        if args.backward:
          tb_ns = timing(lambda: ns_bwd(a_jax, w_jax), jax_sync)
          tb_eigh = (float("nan") if args.no_eigh
                     else timing(lambda: eigh_bwd(a_jax, w_jax), jax_sync))
          tb_torch = timing(lambda: torch_bwd(a_torch, w_torch), torch_sync)
          bwd_rows.append((d, b, tb_ns, tb_eigh, tb_torch))
        # Progress with numbers, so an interrupted run still leaves its results.
        done = (f"# d={d} batch={b}: fwd ms jax NS {t_ns:.2f}, eigh {t_eigh:.2f}, "
                f"torch {t_torch:.2f}")
        if args.backward:
          done += f"; fwd+bwd ms jax NS {tb_ns:.2f}, eigh {tb_eigh:.2f}, torch {tb_torch:.2f}"
        print(done, file=sys.stderr, flush=True)

  def table(title: str, rows) -> None:
    print(f"{title}\n")
    print("| d | batch | jax NS ms | jax eigh ms | torch NS ms | ratio torch/jax |")
    print("|---:|---:|---:|---:|---:|---:|")
    for d, b, t_ns, t_eigh, t_torch in rows:
      eigh = "skipped" if np.isnan(t_eigh) else f"{t_eigh:.2f}"
      print(f"| {d} | {b} | {t_ns:.2f} | {eigh} | {t_torch:.2f} | {t_torch / t_ns:.2f} |")
    print()

  table("Forward", fwd_rows)
  if args.backward:
    table("Forward + backward", bwd_rows)
  print(f"# jax NS vs torch NS, max |diff| / max |out| over all cells: {max_diff:.1e}")
  print(f"# load average at end {os.getloadavg()[0]:.2f}; {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
  main()
