"""OpenAI CLIP's byte-level BPE tokenizer: the ids of `clip.tokenize`, without torch.

The text goes through, in order:
  1. clean-up: `ftfy.fix_text`, HTML entities unescaped twice, stripped; runs of
     whitespace become one space; lower-cased;
  2. pre-tokenisation: the special tokens, the English contractions ('s 't 're 've 'm
     'll 'd), runs of letters, single digits, and runs of other non-space characters;
  3. each piece's UTF-8 bytes mapped to printable characters (GPT-2's byte table), with
     `</w>` marking the piece's last character, then merged pair by pair in the order of
     the merge list (lowest rank first) until no listed pair is left.
Ids: the 256 byte characters, the same with `</w>`, one per merge, then
`<|startoftext|>` (49406) and `<|endoftext|>` (49407); 49408 in all.

The vocabulary (bpe_simple_vocab_16e6.txt.gz beside this file, OpenAI's, MIT licence
in LICENSE.clip_vocabulary) ships with the package. ftfy and regex are pinned in
pyproject.toml: their versions can change the ids.
"""

from __future__ import annotations

import functools
import gzip
import html
import os
from typing import Sequence, Union

import ftfy
import numpy as np
import regex

VOCAB_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "bpe_simple_vocab_16e6.txt.gz")
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
VOCAB_SIZE = 49408
# The merges CLIP uses: the vocabulary file's first line is a header; the rest of the
# file beyond these is unused.
_NUM_MERGES = VOCAB_SIZE - 2 * 256 - 2

_PIECES = regex.compile(
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]"
    r"|[^\s\p{L}\p{N}]+", regex.IGNORECASE)


def _byte_table() -> dict[int, str]:
  """Byte -> a printable character: printable Latin-1 bytes map to themselves, the other
  bytes (controls, space, ...) to code points 256, 257, ... in byte order. The table's
  order (the printable bytes first, then the others) is the order of the first 256 ids."""
  keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
          + list(range(ord("\u00ae"), ord("\u00ff") + 1)))
  table = {b: chr(b) for b in keep}
  others = [b for b in range(256) if b not in table]
  table.update({b: chr(256 + n) for n, b in enumerate(others)})
  return table


class Tokenizer:
  """CLIP's BPE over the vocabulary file at `vocab_path`."""

  def __init__(self, vocab_path: str = VOCAB_PATH):
    with gzip.open(vocab_path, "rt", encoding="utf-8") as f:
      lines = f.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1:1 + _NUM_MERGES]]
    self.byte_table = _byte_table()
    symbols = list(self.byte_table.values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += [START_OF_TEXT, END_OF_TEXT]
    self.encoder = {token: i for i, token in enumerate(vocab)}
    self.ranks = {pair: i for i, pair in enumerate(merges)}
    self.sot = self.encoder[START_OF_TEXT]
    self.eot = self.encoder[END_OF_TEXT]
    self._bpe = functools.lru_cache(maxsize=1 << 16)(self._merge)

  def _merge(self, piece: str) -> tuple[str, ...]:
    """A byte-mapped piece -> its BPE symbols (the last one carries `</w>`)."""
    if piece in (START_OF_TEXT, END_OF_TEXT):
      return (piece,)
    word = list(piece[:-1]) + [piece[-1] + "</w>"]
    while len(word) > 1:
      pairs = {(a, b) for a, b in zip(word, word[1:])}
      best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
      if best not in self.ranks:
        break
      merged, i = [], 0
      while i < len(word):  # every occurrence, left to right, without overlaps
        if i + 1 < len(word) and (word[i], word[i + 1]) == best:
          merged.append(word[i] + word[i + 1])
          i += 2
        else:
          merged.append(word[i])
          i += 1
      word = merged
    return tuple(word)

  @staticmethod
  def clean(text: str) -> str:
    """ftfy, double HTML unescaping, whitespace runs -> one space, lower case."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()

  def encode(self, text: str) -> list[int]:
    """The ids of `text`, without the start and end tokens."""
    ids = []
    for piece in _PIECES.findall(self.clean(text)):
      mapped = "".join(self.byte_table[b] for b in piece.encode("utf-8"))
      ids.extend(self.encoder[s] for s in self._bpe(mapped))
    return ids


@functools.lru_cache(maxsize=1)
def default_tokenizer() -> Tokenizer:
  return Tokenizer()


def tokenize(texts: Union[str, Sequence[str]], context_length: int = 77,
             truncate: bool = False) -> np.ndarray:
  """Texts -> int32 ids [N, context_length], as OpenAI CLIP's `clip.tokenize`.

  Each row is `<|startoftext|>`, the text's ids, `<|endoftext|>`, then zeros. The end
  token's position is the row's argmax (CLIP's text feature is read there).

  Args:
    texts: one string or a sequence of N strings.
    context_length: row length (CLIP's text positional embedding has 77 rows).
    truncate: cut a text that does not fit and end it with `<|endoftext|>`; otherwise
      such a text raises.
  Raises:
    ValueError: a text too long for `context_length` (naming it), or a non-string.
  """
  if isinstance(texts, str):
    texts = [texts]
  tokenizer = default_tokenizer()
  out = np.zeros((len(texts), context_length), np.int32)
  for row, text in enumerate(texts):
    if not isinstance(text, str):
      raise ValueError(f"tokenize: text {row} is a {type(text).__name__} ({text!r}), "
                       "expected a str.")
    ids = [tokenizer.sot] + tokenizer.encode(text) + [tokenizer.eot]
    if len(ids) > context_length:
      if not truncate:
        raise ValueError(f"text {text!r} is {len(ids)} tokens with the start and end "
                         f"tokens, too long for context length {context_length} (pass "
                         "truncate=True to cut it).")
      ids = ids[:context_length]
      ids[-1] = tokenizer.eot
    out[row, :len(ids)] = ids
  return out
