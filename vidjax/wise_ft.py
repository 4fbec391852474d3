r"""WiSE-FT: the weight-space ensemble of a fine-tuned checkpoint and the weights its
training started from, as TC-CLIP's zero-shot protocol evaluates it (reference/tcclip.md 5).

    python -m vidjax.wise_ft --initial /tmp/tc_clip_init --finetuned /tmp/tc_clip_zs/best \
        --alpha 0.7 --output /tmp/tc_clip_zs_wise

Every parameter becomes `(1 - alpha) * initial + alpha * finetuned`, except those whose
'/'-joined path matches `--keep` (default: TC-CLIP's new parameters `local_global_bias`,
`prompt_learner`, `prompt_generation`), which are the fine-tuned ones; other collections
(BatchNorm statistics) are the fine-tuned ones too. alpha 0 gives the initial weights, 1
the fine-tuned ones; TC-CLIP reports 0.7. `--keep ''` mixes every parameter (plain WiSE-FT).

--initial: what the training started from (its `config.init_from`, e.g. the output of
`python -m converters --source clip ...`). --finetuned: a training workdir (its latest
checkpoint), WORKDIR/best, a step directory, or a variables directory. The two must hold
the same parameters with the same shapes.

--output: a new variables directory, written whole or not at all (a temporary sibling
renamed at the end), with the fine-tuned run's config.json when it has one. Use it as any
checkpoint:

    python -m vidjax.main --mode eval --config /tmp/tc_clip_zs --checkpoint /tmp/tc_clip_zs_wise
    python -m vidjax.predict --checkpoint /tmp/tc_clip_zs_wise VIDEO.mp4
    python scripts/tc_clip_splits.py --config configs/tc_clip.py --checkpoint /tmp/tc_clip_zs_wise ...
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from typing import Any, Optional, Sequence

import numpy as np

from vidjax import config_checks
from vidjax.run_config import CONFIG_FILE

# TC-CLIP's WiSE-FT (reference/tcclip.md 5): these stay fine-tuned; alpha 0.7.
TC_CLIP_KEEP = ("local_global_bias", "prompt_learner", "prompt_generation")
TC_CLIP_ALPHA = 0.7


def _leaves(tree: Any) -> dict[str, Any]:
  import jax  # pylint: disable=g-import-not-at-top
  from vidjax.train.sharding import path_name  # pylint: disable=g-import-not-at-top
  return {path_name(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def check_same_tree(initial: Any, finetuned: Any) -> None:
  """ValueError (one line naming up to 3 paths of each kind) unless both pytrees hold the
  same paths with the same shapes."""
  a, b = _leaves(initial), _leaves(finetuned)
  problems = []
  for what, keys in (("only in --initial", sorted(set(a) - set(b))),
                     ("only in --finetuned", sorted(set(b) - set(a)))):
    if keys:
      problems.append(f"{len(keys)} {what} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
  shapes = [f"{k} {tuple(np.shape(a[k]))} vs {tuple(np.shape(b[k]))}" for k in sorted(set(a) & set(b))
            if np.shape(a[k]) != np.shape(b[k])]
  if shapes:
    problems.append(f"{len(shapes)} of other shapes ({', '.join(shapes[:3])}"
                    f"{', ...' if len(shapes) > 3 else ''})")
  if problems:
    raise ValueError("the --initial and --finetuned parameters differ: " + "; ".join(problems)
                     + ". Both must come from the same model config.")


def mix(initial: Any, finetuned: Any, alpha: float, keep: Sequence[str] = TC_CLIP_KEEP) -> Any:
  """(1 - alpha) * initial + alpha * finetuned, leaf by leaf, in float32 and then in the
  fine-tuned leaf's dtype; leaves whose path matches one of `keep` (regexes) are
  `finetuned`'s. Params pytrees of the same structure (`check_same_tree`)."""
  import jax  # pylint: disable=g-import-not-at-top
  from vidjax.train.sharding import path_name  # pylint: disable=g-import-not-at-top
  kept = re.compile("|".join(keep)) if any(keep) else None

  def one(path, a, b):
    b = np.asarray(b)
    floating = np.issubdtype(b.dtype, np.floating) or b.dtype.name == "bfloat16"
    if not floating or (kept is not None and kept.search(path_name(path))):
      return b
    w = np.float32(alpha)
    out = (np.float32(1) - w) * np.asarray(a, np.float32) + w * b.astype(np.float32)
    return out.astype(b.dtype)

  return jax.tree_util.tree_map_with_path(one, initial, finetuned)


def wise_ft_variables(initial: dict, finetuned: dict, alpha: float,
                      keep: Sequence[str] = TC_CLIP_KEEP) -> dict:
  """The fine-tuned variables with their "params" ensembled with `initial`'s."""
  check_same_tree(initial["params"], finetuned["params"])
  out = dict(finetuned)
  out["params"] = mix(initial["params"], finetuned["params"], alpha, keep)
  return out


def run_config_file(checkpoint: str) -> Optional[str]:
  """config.json of the run a checkpoint comes from: in the directory itself, or the
  workdir of WORKDIR/best or of a step directory WORKDIR/checkpoints/STEP; None if none."""
  path = os.path.abspath(os.path.expanduser(checkpoint))
  for where in (path, os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
    if os.path.isfile(os.path.join(where, CONFIG_FILE)):
      return os.path.join(where, CONFIG_FILE)
  return None


def _parse(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m vidjax.wise_ft", allow_abbrev=False,
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--initial", required=True, help="the weights training started from")
  parser.add_argument("--finetuned", required=True, help="the fine-tuned checkpoint")
  parser.add_argument("--alpha", type=float, default=TC_CLIP_ALPHA,
                      help="the fine-tuned weights' share, in [0, 1] (default 0.7, TC-CLIP's)")
  parser.add_argument("--keep", default="|".join(TC_CLIP_KEEP),
                      help="regex of parameter paths taken from --finetuned unmixed "
                           "(default TC-CLIP's new parameters; '' mixes all)")
  parser.add_argument("--output", required=True, help="new variables directory")
  return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = _parse(sys.argv[1:] if argv is None else argv)
  out = os.path.abspath(os.path.expanduser(args.output))
  if not 0.0 <= args.alpha <= 1.0:
    config_checks.exit_with_error(f"--alpha={args.alpha}: expected the fine-tuned share in [0, 1].")
  try:
    re.compile(args.keep)
  except re.error as e:
    config_checks.exit_with_error(f"--keep={args.keep!r} is not a regex: {e}.")
  if os.path.lexists(out):
    config_checks.exit_with_error(f"--output {args.output} exists: remove it or choose another.")
  for flag in ("initial", "finetuned"):
    if not os.path.isdir(os.path.expanduser(getattr(args, flag))):
      config_checks.exit_with_error(f"--{flag} {getattr(args, flag)} is not a directory "
                                    "(a workdir or a variables directory).")

  from absl import logging  # pylint: disable=g-import-not-at-top
  from vidjax.train import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)   # orbax logs every file it restores at INFO
  try:
    initial = ckpt_lib.load_variables(args.initial)
    finetuned = ckpt_lib.load_variables(args.finetuned)
    variables = wise_ft_variables(initial, finetuned, args.alpha, [args.keep])
  except (ckpt_lib.CheckpointError, ValueError) as e:
    config_checks.exit_with_error(str(e))
  config_file = run_config_file(args.finetuned)
  meta = {"wise_ft": {"alpha": args.alpha, "keep": args.keep,
                      "initial": os.path.abspath(os.path.expanduser(args.initial)),
                      "finetuned": os.path.abspath(os.path.expanduser(args.finetuned))}}
  if config_file:
    meta["config"] = config_file
  tmp = f"{out}.tmp{os.getpid()}"
  try:
    ckpt_lib.save_variables(tmp, variables, meta=meta)
    if config_file:   # predict and --mode eval find the config without --config
      shutil.copyfile(config_file, os.path.join(tmp, CONFIG_FILE))
    os.rename(tmp, out)
  except BaseException as e:
    shutil.rmtree(tmp, ignore_errors=True)
    if isinstance(e, OSError):
      config_checks.exit_with_error(f"{args.output}: cannot write the ensembled variables: {e}")
    raise
  n = len(_leaves(variables["params"]))
  print(f"wrote {out}: {n} parameters, alpha {args.alpha} of {args.finetuned} and "
        f"{1 - args.alpha:g} of {args.initial}" + ("" if config_file else
        " (no config.json: pass --config to use it)"))
  return 0


if __name__ == "__main__":
  sys.exit(main())
