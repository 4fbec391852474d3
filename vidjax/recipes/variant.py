"""The variant grammar of every config: `configs/NAME.py:VARIANT`.

A variant is parts joined by ',' or '_' in any order (`sthv2_16f_test2x3` is
`sthv2,16f,test2x3`); a part may itself hold '_' (`nl_dot_product`), and then is one
part wherever it appears. Each part has a kind, and a config takes at most one part of each
kind; `demo` and `smoke` (kind run) take no other part but a model variant (`r16_demo`).
Each config declares the parts it accepts; anything else is one error that names the
config file, the bad part and the accepted parts.
"""

from __future__ import annotations

import dataclasses
import os
import re

# kind -> how errors name it.
KINDS = {"dataset": "data set", "frames": "frames", "sampling": "sampling",
         "test": "test protocol", "model": "model variant", "run": "run"}
RUNS = ("demo", "smoke")


@dataclasses.dataclass(frozen=True)
class Variant:
  """A parsed variant: the part of each kind, "" where the variant names none."""
  file: str
  arg: str
  dataset: str = ""
  frames: str = ""
  sampling: str = ""
  test: str = ""
  model: str = ""
  run: str = ""

  def num_frames(self, default: int) -> int:
    """`16f` -> 16; `default` when no frames part is named."""
    return int(self.frames[:-1]) if self.frames else default

  def error(self, why: str) -> ValueError:
    return ValueError(f"{self.file}: variant {self.arg!r}: {why}")


def config_file(path: str) -> str:
  """A config's `__file__` -> 'configs/NAME.py', as errors name it."""
  return f"configs/{os.path.basename(path)}"


def _split(arg: str, accepted) -> list[str]:
  """`arg` cut at ',' and '_', except inside an accepted part that itself holds '_'
  (`nl_dot_product`): at each place the longest accepted run of '_'-joined words wins."""
  tokens = re.split(r"([,_])", arg)
  words, seps = [w.strip() for w in tokens[0::2]], tokens[1::2]
  parts, i = [], 0
  while i < len(words):
    end, part = i + 1, words[i]
    joined = words[i]
    for j in range(i + 1, len(words)):
      if seps[j - 1] != "_":
        break
      joined += "_" + words[j]
      if joined in accepted:
        end, part = j + 1, joined
    parts.append(part)
    i = end
  return parts


def parse(arg: str, file: str, **accepts: tuple[str, ...]) -> Variant:
  """Parses `arg` for config `file` (its `__file__`), which accepts the parts `accepts`
  gives per kind (keys of KINDS, e.g. `dataset=("sthv1", "sthv2"), run=RUNS`)."""
  file = config_file(file)
  accepts = {kind: parts for kind, parts in accepts.items() if parts}
  kind_of = {part: kind for kind, parts in accepts.items() for part in parts}
  chosen: dict[str, str] = {}
  for part in _split(arg or "", kind_of):
    if not part:
      continue
    if part not in kind_of:
      listed = "; ".join(f"{KINDS[k]}: {' | '.join(parts)}" for k, parts in accepts.items())
      raise ValueError(f"{file}: unknown variant part {part!r} in {arg!r}; accepted parts "
                       f"(joined by ',' or '_', at most one of each kind): {listed}.")
    kind = kind_of[part]
    if chosen.get(kind) == part:
      raise ValueError(f"{file}: variant {arg!r} names {part!r} twice.")
    if kind in chosen:
      raise ValueError(f"{file}: variant {arg!r} names more than one {KINDS[kind]}: "
                       f"{chosen[kind]!r} and {part!r}.")
    chosen[kind] = part
  if "run" in chosen and set(chosen) - {"run", "model"}:
    raise ValueError(f"{file}: variant {arg!r}: {chosen['run']!r} takes no data set, "
                     "frames, sampling or test part (only a model variant).")
  return Variant(file, arg, **chosen)
