"""The list readers of vidjax/data/sources.py on random files: they return records that
match the content, or raise AnnotationError `path:LINE: ...` at a real, bad line; never
another exception.

Structured cases are judged line by line by a reference reader written here (`_judge`)
from the formats' documented rules, independently of sources.py's code.
"""

import codecs
import csv
import io
import math
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidjax.data import sources

# No example database: the repo stays clean; a failure prints its falsifying example.
_SETTINGS = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
_MAX_INT = 2**31 - 1
_NAMES = ["abseiling down", "b", "riding a bike"]   # label names of the fuzzed CSVs


@pytest.fixture(scope="module")
def list_path(tmp_path_factory):
  # A space and a colon in the path: the message prefix is found by the exact path.
  return str(tmp_path_factory.mktemp("lists") / "my lists: a" / "l 1.txt")


def _write(path, data: bytes) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)
  return path


def _lines(data: bytes) -> list[bytes]:
  """The file's lines as an editor numbers them (split at \\n; none after a final one)."""
  pieces = data.split(b"\n")
  return pieces[:-1] if pieces[-1] == b"" else pieces


def _error_line(error: Exception, path: str, data: bytes) -> int:
  """The line number an AnnotationError names; asserts its form and that the line exists."""
  assert type(error) is sources.AnnotationError, repr(error)
  message = str(error)
  assert message.startswith(path + ":"), message
  match = re.match(r"(\d+): \S", message[len(path) + 1:])
  assert match, message
  line = int(match.group(1))
  assert 1 <= line <= max(1, len(_lines(data))), (line, data)
  assert "\n" not in message, message   # one line
  return line


# ------------------------------------------------------------- reference line judge
def _text(raw: bytes, n: int):
  """Line n's text, or None when the line itself is bad (not UTF-8, NUL, inner \\r)."""
  if n == 1 and raw.startswith(codecs.BOM_UTF8):
    raw = raw[3:]
  if raw.endswith(b"\r"):
    raw = raw[:-1]
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError:
    return None
  return None if ("\r" in text or "\0" in text) else text


def _label_ok(token: str, num_classes: int) -> bool:
  return (token.isascii() and token.isdigit() and int(token) <= _MAX_INT
          and (not num_classes or int(token) < num_classes))


def _strip_last(text: str, token: str) -> str:
  assert text.endswith(token)
  return text[:len(text) - len(token)].strip()


def _judge(kind: str, text: str, num_classes: int):
  """("blank"|"bad"|record) for one decoded line of a list of `kind`."""
  tokens = text.split()
  if not tokens:
    return "blank"
  body = text.strip()
  if kind in ("videos", "frames"):
    labels = tokens[-1:]
    if kind == "frames":
      if len(tokens) < 3:
        return "bad"
      count = tokens[-2]
      path = _strip_last(_strip_last(body, tokens[-1]), tokens[-2])
    else:
      if len(tokens) < 2:
        return "bad"
      path = _strip_last(body, tokens[-1])
  else:  # multi-label: the path is the first token
    first_label = 2 if kind == "frames_multi" else 1
    if len(tokens) < first_label + 1:
      return "bad"
    path, count, labels = tokens[0], tokens[1], tokens[first_label:]
  if not all(_label_ok(t, num_classes) for t in labels):
    return "bad"
  if kind.startswith("frames"):
    if not (count.isascii() and count.isdigit() and 0 < int(count) <= _MAX_INT):
      return "bad"
    return (path, int(count), [int(t) for t in labels])
  return (path, [int(t) for t in labels])


def _parse(kind: str, path: str, num_classes: int):
  """Records as (path, labels) or (path, num_frames, labels), relative (root "")."""
  multi = kind.endswith("_multi")
  if kind.startswith("frames"):
    return [tuple(r) for r in sources.parse_frame_list(path, "", multi, num_classes)]
  return [tuple(r) for r in sources.parse_video_list(path, "", multi, num_classes)]


def _check_against_judge(kind: str, path: str, data: bytes, num_classes: int) -> None:
  lines = _lines(data)
  verdicts = []
  for n, raw in enumerate(lines, 1):
    text = _text(raw, n)
    verdicts.append("bad" if text is None else _judge(kind, text, num_classes))
  records = [v for v in verdicts if v not in ("blank", "bad")]
  try:
    got = _parse(kind, path, num_classes)
  except sources.AnnotationError as e:
    line = _error_line(e, path, data)
    if "bad" in verdicts:
      assert verdicts[line - 1] == "bad", (str(e), verdicts)
    else:   # nothing bad: the only error left is an empty list, named at line 1
      assert not records and line == 1 and "empty" in str(e), str(e)
    return
  assert "bad" not in verdicts, (verdicts, got)
  assert got == records


# ------------------------------------------------------------------- strategies
_TOKENS = st.one_of(
    st.integers(-3, 12).map(str),
    st.sampled_from(["0", "00", "+1", "1.0", "1_0", "\u0663", "99999999999", str(_MAX_INT),
                     str(_MAX_INT + 1), "-0", "x", "a.mp4", "my clip.mp4", "abseiling down/",
                     "d/é", "dir", "#", ",", "\u00a0", "\u2028", "\x0c", "\x85"]),
    st.text(alphabet="ab 1-.\t/é", min_size=1, max_size=5),
)
_SEPS = st.sampled_from([" ", "  ", "\t", " \t", "\u00a0", "\u3000"])


@st.composite
def _list_files(draw) -> bytes:
  """UTF-8 list files of random token lines, maybe with a BOM, CRLF, or a corrupt byte."""
  lines = []
  for _ in range(draw(st.integers(0, 6))):
    parts = [draw(st.sampled_from(["", " ", "\t"]))]
    for token in draw(st.lists(_TOKENS, max_size=5)):
      parts += [token, draw(_SEPS)]
    lines.append("".join(parts[:-1] if draw(st.booleans()) else parts))
  end = draw(st.sampled_from(["\n", "\r\n"]))
  data = end.join(lines).encode("utf-8")
  if lines and draw(st.booleans()):
    data += end.encode()
  if draw(st.booleans()):
    data = codecs.BOM_UTF8 + data
  if draw(st.integers(0, 4)) == 0:   # corrupt one spot
    at = draw(st.integers(0, len(data)))
    bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82", b"\x00", b"\r", b"\x80abc"]))
    data = data[:at] + bad + data[at:]
  return data


@st.composite
def _valid_lists(draw):
  """(kind, num_classes, records, file bytes) of lists that must parse to `records`."""
  kind = draw(st.sampled_from(["videos", "frames", "videos_multi", "frames_multi"]))
  num_classes = draw(st.integers(1, 5))
  label = st.integers(0, num_classes - 1)
  words = st.text(alphabet="abcé_.-/0123456789", min_size=1, max_size=6)
  records, lines = [], []
  for _ in range(draw(st.integers(1, 5))):
    if kind.endswith("_multi"):
      path = draw(words)
    else:   # inner whitespace of any kind stays part of the path
      path = draw(words) + "".join(draw(_SEPS) + draw(words)
                                   for _ in range(draw(st.integers(0, 2))))
    labels = draw(st.lists(label, min_size=1, max_size=3)) if kind.endswith("_multi") \
        else [draw(label)]
    fields = [path] + [str(l) for l in labels]
    if kind.startswith("frames"):
      count = draw(st.integers(1, 10**6))
      fields.insert(1, str(count))
      records.append((path, count, labels))
    else:
      records.append((path, labels))
    lines.append(draw(st.sampled_from(["", " ", "\t"])) + draw(_SEPS).join(fields)
                 + draw(st.sampled_from(["", " ", "\t"])))
    if draw(st.integers(0, 3)) == 0:
      lines.append(draw(st.sampled_from(["", "  ", "\t"])))
  data = "\n".join(lines).encode("utf-8") + draw(st.sampled_from([b"", b"\n"]))
  return kind, num_classes, records, data


# ------------------------------------------------------------------------ tests
@settings(max_examples=250, **_SETTINGS)
@given(data=st.binary(max_size=120))
def test_random_bytes_parse_or_name_a_real_line(list_path, data):
  path = _write(list_path, data)
  for kind in ("videos", "frames", "videos_multi", "frames_multi"):
    for num_classes in (0, 3):
      _check_against_judge(kind, path, data, num_classes)
  for call in (lambda: sources.parse_kinetics_csv(path),
               lambda: sources.parse_kinetics_csv(path, label_names=_NAMES, num_classes=3),
               lambda: sources.ListSource(list_file=path, fmt="kinetics_csv", num_classes=3,
                                          label_names=_NAMES),
               lambda: sources.ListSource(list_file=path, fmt="frames", num_classes=3)):
    try:
      call()
    except sources.AnnotationError as e:
      _error_line(e, path, data)


@settings(max_examples=250, **_SETTINGS)
@given(data=_list_files(), kind=st.sampled_from(["videos", "frames", "videos_multi",
                                                 "frames_multi"]),
       num_classes=st.sampled_from([0, 1, 4, 11]))
def test_random_token_lines_parse_as_judged_or_name_the_bad_line(list_path, data, kind,
                                                                 num_classes):
  _check_against_judge(kind, _write(list_path, data), data, num_classes)


@settings(max_examples=150, **_SETTINGS)
@given(case=_valid_lists())
def test_valid_lists_parse_to_their_records(list_path, case):
  kind, num_classes, records, data = case
  path = _write(list_path, data)
  assert _parse(kind, path, num_classes) == records
  src = sources.ListSource(list_file=path, fmt=kind.split("_")[0], root="/data",
                           multi_label=kind.endswith("_multi"), num_classes=num_classes)
  assert len(src) == len(records)
  for i, record in enumerate(records):
    item = src[i]
    key = "frame_dir" if kind.startswith("frames") else "video"
    assert item[key] == os.path.join("/data", record[0])
    if kind.startswith("frames"):
      assert item["num_frames"] == record[1]
    if kind.endswith("_multi"):
      assert sorted(set(record[-1])) == [int(j) for j in item["label"].nonzero()[0]]
    else:
      assert int(item["label"]) == record[-1][0]


@settings(max_examples=150, **_SETTINGS)
@given(data=_list_files())
def test_label_name_files_read_back_their_lines(list_path, data):
  path = _write(list_path, data)
  texts = [_text(raw, n) for n, raw in enumerate(_lines(data), 1)]
  names = [t.strip() for t in texts if t is not None and t.strip()]
  try:
    got = sources.read_label_names(path)
  except sources.AnnotationError as e:
    line = _error_line(e, path, data)
    text = texts[line - 1] if texts else ""
    repeated = text is not None and text.strip() and [
        t.strip() for t in texts[:line - 1] if t is not None].count(text.strip())
    assert text is None or repeated or not names, (str(e), texts)
    return
  assert None not in texts and got == names and len(set(names)) == len(names)


_CSV_CELLS = st.one_of(st.sampled_from(_NAMES + ["unknown", "", " b ", "\"b\"", "a,b",
                                                 "\"x", "1", "1.5", "-2", "nan", "inf",
                                                 "1e3", "abc", "train"]),
                       st.integers(0, 500).map(str))


@st.composite
def _csv_files(draw) -> bytes:
  header = draw(st.sampled_from(["label,youtube_id,time_start,time_end,split",
                                 "label,youtube_id,time_start,time_end,split,is_cc",
                                 "youtube_id,time_start,time_end,split", "", "label"]))
  rows = [",".join(draw(st.lists(_CSV_CELLS, min_size=0, max_size=7)))
          for _ in range(draw(st.integers(0, 5)))]
  if draw(st.booleans()):  # mostly well-formed rows
    rows += [f"{draw(st.sampled_from(_NAMES))},id{i},{draw(st.integers(0, 99))},"
             f"{draw(st.integers(0, 99))},train" for i in range(draw(st.integers(0, 3)))]
  order = draw(st.permutations(rows))
  data = "\n".join([header] + list(order)).encode("utf-8")
  if draw(st.integers(0, 5)) == 0:
    at = draw(st.integers(0, len(data)))
    data = data[:at] + draw(st.sampled_from([b"\xff", b"\x00", b"\r", b"\""])) + data[at:]
  return data


def _csv_row_ok(cells: list[str], header: list[str], names) -> bool:
  if len(cells) != len(header):
    return False
  row = dict(zip(header, cells))
  for key in ("time_start", "time_end"):
    try:
      if not math.isfinite(float(row[key])):
        return False
    except ValueError:
      return False
  return names is None or row["label"].strip() in names


@settings(max_examples=200, **_SETTINGS)
@given(data=_csv_files(), with_names=st.booleans())
def test_kinetics_csv_rows_parse_or_name_the_bad_row(list_path, data, with_names):
  path = _write(list_path, data)
  names = _NAMES if with_names else None
  try:
    got, got_names = sources.parse_kinetics_csv(path, "/k", names,
                                                num_classes=3 if with_names else 0)
  except sources.AnnotationError as e:
    _error_line(e, path, data)
    return
  # Parsed: then the file is UTF-8 CSV whose rows are all good.
  text = data.decode("utf-8")
  cells = [r for r in csv.reader(io.StringIO(text, newline="")) if any(c.strip() for c in r)]
  header, rows = [h.strip() for h in cells[0]], cells[1:]
  assert rows and all(_csv_row_ok(r, header, names) for r in rows), text
  assert got_names == (names or sorted({dict(zip(header, r))["label"].strip() for r in rows}))
  for (p, (label,)), cells in zip(got, rows):
    row = dict(zip(header, cells))
    assert got_names[label] == row["label"].strip()
    assert p == (f"/k/{row['youtube_id']}_{int(float(row['time_start'])):06d}_"
                 f"{int(float(row['time_end'])):06d}.mp4")


# --------------------------------------------------- each message, spelled out
@pytest.mark.parametrize("kind,content,kwargs,expected", [
    ("videos", b"a.mp4 0\nb.mp4 x\n", {}, ":2: labels must be integers, got 'x'; expected"),
    ("videos", b"a.mp4 -1\n", {}, ":1: label -1 is negative; expected an integer >= 0."),
    ("videos", b"a.mp4 0\n\nb.mp4 3\n", {"num_classes": 3},
     ":3: label 3 is out of range for data.num_classes=3; expected 0..2."),
    ("videos", b"a.mp4\n", {}, ":1: expected `path label`, got 'a.mp4'."),
    ("videos", b"a.mp4 0\nb\xe9.mp4 1\n", {},
     ":2: bytes b'\\xe9' at byte 2 of the line are not UTF-8; expected a UTF-8 text"),
    ("videos", b"a.mp4 0\rb.mp4 1\n", {}, ":1: a carriage return (\\r) inside the line;"),
    ("videos", b"\n  \n", {}, ":1: empty annotation list; expected one `path label` line"),
    ("videos", b"", {}, ":1: empty annotation list;"),
    ("frames", b"d 0 1\n", {}, ":1: num_frames must be a positive integer, got '0'."),
    ("frames", b"d 1.5 1\n", {}, ":1: num_frames must be a positive integer, got '1.5'."),
    ("frames", b"d 3\n", {}, ":1: expected `dir num_frames label`, got 'd 3'."),
    ("frames_multi", b"my dir 3 1\n", {},
     ":1: num_frames must be a positive integer, got 'dir'."),
    ("labels", b"a\nb\na\n", {}, ":3: class name 'a' repeats line 1; expected each class once"),
    ("labels", b"a\nb\n", {"num_classes": 3},
     ": 2 class names, but data.num_classes=3; expected one name per class"),
    ("labels", b"\xff\n", {}, ":1: bytes b'\\xff' at byte 1 of the line are not UTF-8"),
    ("csv", b"label,youtube_id\n", {},
     ":1: expected a header with the columns label,youtube_id,time_start,time_end, got"),
    ("csv", b"label,youtube_id,time_start,time_end\nb,x,1,2\n\nc,y,z,3\n", {},
     ":4: time_start must be a number of seconds, got 'z'."),
    ("csv", b"label,youtube_id,time_start,time_end\nb,x,1\n", {},
     ":2: expected 4 fields (label,youtube_id,time_start,time_end), got 3."),
    ("csv", b"label,youtube_id,time_start,time_end\n\"b\nc\",x,1,2\nq,x,1,2\n",
     {"label_names": ["b"]}, ":2: class 'b\\nc' is not in the label names;"),
    ("csv", b"label,youtube_id,time_start,time_end\na,x,1,2\n", {"num_classes": 2},
     ": 1 label names, but data.num_classes=2 (the sorted classes of this CSV;"),
])
def test_each_error_names_file_line_and_expectation(tmp_path, kind, content, kwargs,
                                                    expected):
  path = _write(str(tmp_path / "list file.txt"), content)
  call = {"videos": sources.parse_video_list, "frames": sources.parse_frame_list,
          "frames_multi": lambda p: sources.parse_frame_list(p, multi_label=True),
          "labels": sources.read_label_names, "csv": sources.parse_kinetics_csv}[kind]
  with pytest.raises(sources.AnnotationError) as info:
    call(path, **kwargs)
  assert str(info.value).startswith(path + expected), str(info.value)


def test_list_source_checks_every_label_at_construction(tmp_path):
  path = _write(str(tmp_path / "val.txt"), b"a.mp4 0\n" * 50 + b"b.mp4 7\n")
  with pytest.raises(sources.AnnotationError, match=r"val.txt:51: label 7 is out of range "
                                                    r"for data.num_classes=5"):
    sources.ListSource(list_file=path, num_classes=5)
  with pytest.raises(sources.AnnotationError, match=r"missing.txt: cannot read the "
                                                    r"annotation list: No such file"):
    sources.ListSource(list_file=str(tmp_path / "missing.txt"))
