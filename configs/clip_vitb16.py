r"""CLIP ViT-B/16, frame-wise: ViFi-CLIP's video classifier (the TC-CLIP repository's
baseline), Kinetics-400 fully supervised.

Parts: recognizer clip (vidjax/models/clip/recognizer.py), the frames' mean embedding
against the class prompts' embeddings, with CLIP's towers beside it in vidjax/models/clip/. Recipe: `clip_config` in
vidjax/recipes/clip.py (reference/tcclip.md 3.4, 4, 5). Prompts: "a photo of a {}."
with each class name split at its capitals ("ApplyEyeMakeup" -> "Apply Eye Makeup"),
tokenized to 30 ids (vidjax.text). Pixels: ImageNet mean and std on the 0..255 scale, as
upstream. The class names are `model.class_names` or the lines of `model.label_file`:

  python -m converters --source clip --config configs/clip_vitb16.py \
      --checkpoint ViT-B-16.pt --output /tmp/clip_vitb16   # OpenAI's TorchScript file
  python -m vidjax.main --config configs/clip_vitb16.py --workdir /tmp/clip_k400 \
      --config.data.root=~/data/kinetics400 \
      --config.model.label_file=~/data/kinetics400/label_names.txt \
      --config.init_from=/tmp/clip_vitb16

Expected: no figure is recorded here for this recipe (the model is verified by parity,
README model zoo). Training jitters colour per frame and greys whole clips as upstream
(data.color_jitter_prob 0.8, data.grayscale_prob 0.2).

Variants:
  vanilla  the prompt is the class name alone ("{}"), vanilla CLIP.
  demo     the same structure at toy size (2 layers of width 64, 8x8 patches) on the
           embedded demo data set, trained from scratch (CPU, minutes); the demo's class
           names ("moving_left", ...) are the prompts:
           python -m vidjax.main --config configs/clip_vitb16.py:demo --workdir /tmp/clip_demo
           expected: a bag of frames, so near chance on the direction classes.
  smoke    the toy model on 4 frames of 32x32, for tests.
"""

import ml_collections

from vidjax.recipes import clip, variant


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  v = variant.parse(arg, __file__, model=("vanilla",), run=variant.RUNS)
  config = clip.clip_config(clip.PROMPTS["vanilla" if v.model == "vanilla" else "vifi"])
  if v.run == "demo":
    clip.demo(config)
  elif v.run == "smoke":
    clip.smoke(config)
  return config
