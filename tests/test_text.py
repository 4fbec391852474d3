"""vidjax.text.tokenize against OpenAI CLIP's own tokenizer (the `openai-clip` package,
its simple_tokenizer.py loaded by path: the package's __init__ imports torchvision)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from vidjax.text import tokenize
from vidjax.text.tokenizer import VOCAB_PATH, default_tokenizer

# Class names of the protocols' data sets (a sample: HMDB51's underscore names, UCF101's
# CamelCase ones, Kinetics' phrases, Something-Something's templates), spelled as the
# label files spell them, and as the CLIP baselines' CamelCase split turns them.
CLASS_NAMES = [
    "brush_hair", "cartwheel", "catch", "chew", "clap", "climb_stairs", "draw_sword",
    "dribble", "fall_floor", "flic_flac", "hand_stand", "kick_ball", "pullup",
    "ride_horse", "shoot_bow", "smile", "somersault", "sword_exercise", "throw", "wave",
    "ApplyEyeMakeup", "ApplyLipstick", "BabyCrawling", "BalanceBeam", "BandMarching",
    "BlowDryHair", "BlowingCandles", "BodyWeightSquats", "BreastStroke", "CleanAndJerk",
    "CuttingInKitchen", "FrontCrawl", "HandstandPushups", "HeadMassage", "JumpingJack",
    "MilitaryParade", "PlayingDaf", "PlayingDhol", "PommelHorse", "PushUps", "SkyDiving",
    "SoccerJuggling", "TaiChi", "Yo-Yo", "YoYo", "WallPushups", "WritingOnBoard",
    "abseiling", "air drumming", "answering questions", "applauding", "applying cream",
    "archery", "arm wrestling", "arranging flowers", "assembling computer", "auctioning",
    "baby waking up", "baking cookies", "balloon blowing", "bandaging", "barbequing",
    "bartending", "beatboxing", "bee keeping", "belly dancing", "bench pressing",
    "bending back", "biking through snow", "blasting sand", "blowing glass",
    "blowing leaves", "blowing nose", "blowing out candles", "bobsledding", "bookbinding",
    "bouncing on trampoline", "bowling", "braiding hair", "breading or breadcrumbing",
    "breakdancing", "brush painting", "brushing hair", "brushing teeth", "building cabinet",
    "building shed", "bungee jumping", "busking", "canoeing or kayaking",
    "capoeira", "carrying baby", "cartwheeling", "carving pumpkin", "catching fish",
    "catching or throwing baseball", "catching or throwing frisbee", "celebrating",
    "changing oil", "changing wheel", "checking tires", "cheerleading", "chopping wood",
    "clapping", "clay pottery making", "clean and jerk", "cleaning floor",
    "cleaning gutters", "cleaning pool", "cleaning shoes", "cleaning toilet",
    "cleaning windows", "climbing a rope", "climbing ladder", "climbing tree",
    "contact juggling", "cooking chicken", "cooking egg", "cooking on campfire",
    "cooking sausages", "counting money", "country line dancing", "cracking neck",
    "crawling baby", "crossing river", "crying", "curling hair", "cutting nails",
    "cutting pineapple", "cutting watermelon", "dancing ballet", "dancing charleston",
    "dancing gangnam style", "dancing macarena", "deadlifting", "decorating the christmas tree",
    "digging", "dining", "disc golfing", "diving cliff", "dodgeball", "doing aerobics",
    "doing laundry", "doing nails", "drawing", "dribbling basketball", "drinking",
    "drinking beer", "drinking shots", "driving car", "driving tractor", "drop kicking",
    "drumming fingers", "dunking basketball", "dying hair", "eating burger", "eating cake",
    "eating carrots", "eating chips", "eating doughnuts", "eating hotdog",
    "eating ice cream", "eating spaghetti", "eating watermelon", "egg hunting",
    "exercising arm", "exercising with an exercise ball", "extinguishing fire",
    "faceplanting", "feeding birds", "feeding fish", "feeding goats", "filling eyebrows",
    "finger snapping", "fixing hair", "flipping pancake", "flying kite", "folding clothes",
    "folding napkins", "folding paper", "front raises", "frying vegetables",
    "garbage collecting", "gargling", "getting a haircut", "getting a tattoo",
    "giving or receiving award", "golf chipping", "golf driving", "golf putting",
    "grinding meat", "grooming dog", "grooming horse", "gymnastics tumbling",
    "hammer throw", "headbanging", "headbutting", "high jump", "high kick",
    "hitting baseball", "hockey stop", "holding snake", "hopscotch", "hoverboarding",
    "hugging", "hula hooping", "hurdling", "hurling (sport)", "ice climbing",
    "ice fishing", "ice skating", "ironing", "javelin throw", "jetskiing", "jogging",
    "juggling balls", "juggling fire", "juggling soccer ball", "jumping into pool",
    "jumpstyle dancing", "kicking field goal", "kicking soccer ball", "kissing",
    "kitesurfing", "knitting", "krumping", "laughing", "laying bricks", "long jump",
    "lunge", "making a cake", "making a sandwich", "making bed", "making jewelry",
    "making pizza", "making snowman", "making sushi", "making tea", "marching",
    "massaging back", "massaging feet", "massaging legs", "massaging person's head",
    "milking cow", "mopping floor", "motorcycling", "moving furniture", "mowing lawn",
    "news anchoring", "opening bottle", "opening present", "paragliding", "parasailing",
    "parkour", "passing American football (in game)", "passing American football (not in game)",
    "peeling apples", "peeling potatoes", "petting animal (not cat)", "petting cat",
    "picking fruit", "planting trees", "plastering", "playing accordion",
    "playing badminton", "playing bagpipes", "playing basketball", "playing bass guitar",
    "playing cards", "playing cello", "playing chess", "playing clarinet",
    "playing controller", "playing cricket", "playing cymbals", "playing didgeridoo",
    "playing drums", "playing flute", "playing guitar", "playing harmonica",
    "playing harp", "playing ice hockey", "playing keyboard", "playing kickball",
    "playing monopoly", "playing organ", "playing paintball", "playing piano",
    "playing poker", "playing recorder", "playing saxophone", "playing squash or racquetball",
    "playing tennis", "playing trombone", "playing trumpet", "playing ukulele",
    "playing violin", "playing volleyball", "playing xylophone", "pole vault",
    "presenting weather forecast", "pull ups", "pumping fist", "pumping gas", "punching bag",
    "punching person (boxing)", "push up", "pushing car", "pushing cart",
    "pushing wheelchair", "reading book", "reading newspaper", "recording music",
    "riding a bike", "riding camel", "riding elephant", "riding mechanical bull",
    "riding mountain bike", "riding mule", "riding or walking with horse",
    "riding scooter", "riding unicycle", "ripping paper", "robot dancing",
    "rock climbing", "rock scissors paper", "roller skating", "running on treadmill",
    "sailing", "salsa dancing", "sanding floor", "scrambling eggs", "scuba diving",
    "setting table", "shaking hands", "shaking head", "sharpening knives",
    "sharpening pencil", "shaving head", "shaving legs", "shearing sheep",
    "shining shoes", "shooting basketball", "shooting goal (soccer)", "shot put",
    "shoveling snow", "shredding paper", "shuffling cards", "side kick",
    "sign language interpreting", "singing", "situp", "skateboarding", "ski jumping",
    "skiing (not slalom or crosscountry)", "skiing crosscountry", "skiing slalom",
    "skipping rope", "skydiving", "slacklining", "slapping", "sled dog racing",
    "smoking", "smoking hookah", "snatch weight lifting", "sneezing", "sniffing",
    "snorkeling", "snowboarding", "snowkiting", "snowmobiling", "somersaulting",
    "spinning poi", "spray painting", "spraying", "springboard diving", "squat",
    "sticking tongue out", "stomping grapes", "stretching arm", "stretching leg",
    "strumming guitar", "surfing crowd", "surfing water", "sweeping floor",
    "swimming backstroke", "swimming breast stroke", "swimming butterfly stroke",
    "swing dancing", "swinging legs", "swinging on something", "sword fighting",
    "tai chi", "taking a shower", "tango dancing", "tap dancing", "tapping guitar",
    "tapping pen", "tasting beer", "tasting food", "testifying", "texting",
    "throwing axe", "throwing ball", "throwing discus", "tickling", "tobogganing",
    "tossing coin", "tossing salad", "training dog", "trapezing", "trimming or shaving beard",
    "trimming trees", "triple jump", "tying bow tie", "tying knot (not on a tie)",
    "tying tie", "unboxing", "unloading truck", "using computer",
    "using remote controller (not gaming)", "using segway", "vault", "waiting in line",
    "walking the dog", "washing dishes", "washing feet", "washing hair", "washing hands",
    "water skiing", "water sliding", "watering plants", "waxing back", "waxing chest",
    "waxing eyebrows", "waxing legs", "weaving basket", "welding", "whistling",
    "windsurfing", "wrapping present", "wrestling", "writing", "yawning", "yoga",
    "zumba", "Putting [something] into [something]",
    "Pretending to pick [something] up", "Moving [something] and [something] away from each other",
]
# FROSTER-style class descriptions (TC-CLIP's `llm` protocol), some longer than 30 tokens.
DESCRIPTIONS = [
    "Abseiling: This video shows a person descending a vertical rock face using a rope.",
    "Air drumming: A person mimics playing drums in the air, moving their hands rhythmically "
    "without any actual instrument.",
    "Applying cream: Someone rubs lotion onto their skin, spreading it evenly over the arms.",
    "Yo-Yo: A child spins a yo-yo up & down; the string (made of cotton) is 1.5 m long!",
    "Bee keeping: A beekeeper in a protective suit inspects the honeycomb frames of a hive.",
    "Playing bagpipes: A musician in a kilt squeezes the bag under one arm while fingering "
    "the chanter, the drones resting on the shoulder; the crowd claps along to the tune as "
    "he marches slowly across the green field at the highland games.",
    "Cleaning gutters: On a ladder against the house, someone scoops wet leaves, twigs and "
    "moss out of the roof gutter with a gloved hand (or a small trowel) and drops them into "
    "a bucket hanging from the rung, then rinses the channel with a garden hose.",
    "Pull Ups: An athlete grips an overhead bar with palms facing away & pulls the body up "
    "until the chin clears the bar -- then lowers slowly; repeated 10-12 times per set.",
]
# Unicode, HTML entities, odd whitespace, mojibake (ftfy repairs it), punctuation, digits.
ODD = [
    "", " ", "\t\n", "a", "A", "a.", "Hello, World!", "It's, we'll, they're, I'd, you've, I'm",
    "IT'S ALL CAPS", "naïve café résumé", "Ünïcödé ÄÖÜ ß", "日本語のテキスト", "中文 文本",
    "한국어 텍스트", "Русский текст", "ελληνικά", "עברית", "العربية", "हिन्दी",
    "emoji 😀🎉👍🏽 👨‍👩‍👧", "math: ∑ x² ≤ ∞ ± √2", "tom &amp; jerry", "&amp;amp;lt;b&amp;amp;gt;",
    "&lt;script&gt;alert(1)&lt;/script&gt;", "&quot;quoted&quot; &#39;single&#39; &#x263A;",
    "&nbsp;non&nbsp;breaking", "multiple     spaces", "tabs\tand\nnewlines\r\nhere",
    "\u00a0nbsp\u2003em space\u200bzero width", "  leading and trailing  ",
    "â€œmojibakeâ€\x9d quotes", "Ã©tÃ© mojibake", "ﬁ ligature ﬂ", "full-width ＡＢＣ１２３",
    "12345 67.89 1,000,000 3rd 21st", "2024-07-25T12:00:00Z", "$100 €50 £30 ¥1000",
    "e-mail@example.com https://example.com/path?q=1&x=2", "C++ / C# / F#",
    "<|startoftext|> special <|endoftext|>", "<|ENDOFTEXT|>", "!!!???...,,,;;;", "'''",
    "'s 't 're 've 'm 'll 'd", "don't won't can't", "under_score_name", "CamelCaseName",
    "a photo of a {}.", "{}", "x" * 60, "supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis", "ZZZZZZZZZZZZZZZZZZZZZZZZZ",
    "\u0301combining accent first", "e\u0301 decomposed é", "control\x00\x01\x7fchars",
    "line\u2028separator\u2029paragraph", "right-to-left \u202eoverride",
]


def _reference():
  """OpenAI's SimpleTokenizer from the installed `openai-clip` package, by path."""
  spec = importlib.util.find_spec("clip")
  if spec is None or not spec.submodule_search_locations:
    pytest.skip("openai-clip is not installed (pip install --no-deps openai-clip==1.0.1)")
  path = os.path.join(list(spec.submodule_search_locations)[0], "simple_tokenizer.py")
  module_spec = importlib.util.spec_from_file_location("_openai_simple_tokenizer", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.SimpleTokenizer()


def _clip_tokenize(ref, texts, context_length=77, truncate=False):
  """`clip.tokenize` over the reference tokenizer (numpy instead of torch)."""
  sot, eot = ref.encoder["<|startoftext|>"], ref.encoder["<|endoftext|>"]
  out = np.zeros((len(texts), context_length), np.int64)
  for i, text in enumerate(texts):
    ids = [sot] + ref.encode(text) + [eot]
    if len(ids) > context_length:
      if not truncate:
        raise RuntimeError(f"Input {text} is too long for context length {context_length}")
      ids = ids[:context_length]
      ids[-1] = eot
    out[i, :len(ids)] = ids
  return out


def _camel(name: str) -> str:
  import re  # pylint: disable=import-outside-toplevel
  return re.sub("([A-Z])", r" \1", name).strip()


def _texts() -> list[str]:
  texts = list(CLASS_NAMES) + DESCRIPTIONS + ODD
  texts += [f"a photo of a {_camel(n)}." for n in CLASS_NAMES]
  texts += [_camel(n).replace("_", " ") for n in CLASS_NAMES + DESCRIPTIONS]
  return texts


def test_ids_match_openai_clip():
  ref = _reference()
  texts = _texts()
  assert len(texts) > 900
  ours = tokenize(texts)
  assert ours.dtype == np.int32 and ours.shape == (len(texts), 77)
  theirs = _clip_tokenize(ref, texts)
  bad = [t for t, a, b in zip(texts, ours, theirs) if not np.array_equal(a, b)]
  assert not bad, f"{len(bad)} texts differ, e.g. {bad[:5]}"
  # The vocabulary is the same file: every id the reference knows, ours gives too.
  mine = default_tokenizer().encoder
  assert mine == ref.encoder and len(mine) == 49408


def test_context_length_truncate_and_error():
  ref = _reference()
  long_texts = [DESCRIPTIONS[1] * 5, " ".join(CLASS_NAMES[:40]), "word " * 100, "😀" * 80]
  for n in (30, 77):
    ours = tokenize(long_texts, context_length=n, truncate=True)
    np.testing.assert_array_equal(ours, _clip_tokenize(ref, long_texts, n, truncate=True))
    assert (ours[:, -1] == 49407).all()
  # Exactly full fits; one more token is refused, naming the text.
  fits = "a " * 28
  assert tokenize(fits, context_length=30)[0, -1] == 49407
  with pytest.raises(ValueError, match=r"text 'a a a .* too long for context length 30"):
    tokenize(fits + "a", context_length=30)
  with pytest.raises(ValueError, match="Air drumming"):
    tokenize(["ok", DESCRIPTIONS[1] * 2], context_length=30)
  with pytest.raises(ValueError, match="text 1 is a int"):
    tokenize(["ok", 3])
  # A single string is one row; the end token is the argmax (CLIP's feature position).
  row = tokenize("a photo of a Apply Eye Makeup.", context_length=30)
  np.testing.assert_array_equal(
      row[0, :11], [49406, 320, 1125, 539, 320, 4356, 3272, 5853, 269, 49407, 0])
  assert row.argmax() == 9


def test_no_torch_and_vocab_shipped():
  """The tokenizer loads its vocabulary from the package and never imports torch."""
  assert os.path.getsize(VOCAB_PATH) == 1_356_917
  code = ("import sys; from vidjax.text import tokenize; tokenize(['a b']); "
          "assert 'torch' not in sys.modules, 'torch imported'")
  subprocess.run([sys.executable, "-c", code], check=True, timeout=120,
                 cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
