r"""TC-CLIP (ECCV 2024): CLIP ViT-B/16 with temporal contextualization and video-conditional
prompting, in the protocols of the paper (reference/tcclip.md 5).

Parts: recognizer tc_clip (vidjax/models/clip/tc_clip.py), with TC blocks in the image
tower (tc_vision.py), learned prompt context and the VP layer before the last text block
(tc_text.py). Recipes: vidjax/recipes/tc_clip.py. Prompts "a photo of a {}." whose 4
leading words are learned, class names split at capitals and "_" -> " " (TC-CLIP's
prompt learner), 30 tokens (77 for :llm). Class names: `model.class_names` or the lines of
`model.label_file`.

Start from OpenAI CLIP (reference/tcclip.md 6.3: q/k/v split, the VP layer copied from
text block 11, the context from "a photo of a"), then train:

  python -m converters --source clip --config configs/tc_clip.py \
      --checkpoint ViT-B-16.pt --output /tmp/tc_clip_init
  python -m vidjax.main --config configs/tc_clip.py --workdir /tmp/tc_clip_zs \
      --config.data.root=~/data/kinetics400 \
      --config.model.label_file=~/data/kinetics400/label_names.txt \
      --config.init_from=/tmp/tc_clip_init

A released TC-CLIP checkpoint (its `module.` keys, pickled OmegaConf config and training
class prompts are handled; CLIP's token embedding comes from OpenAI's file):

  python -m converters --source tc_clip --config configs/tc_clip.py \
      --checkpoint zero_shot_k400_tc_clip.pth --clip_checkpoint ViT-B-16.pt \
      --output /tmp/tc_clip_zs_k400 --config.model.label_file=my_classes.txt

Test protocols over class splits (zero-shot: mean and std over each data set's three
splits; base-to-novel: the harmonic mean of the base and novel means):

  python scripts/tc_clip_splits.py --config configs/tc_clip.py --checkpoint /tmp/tc_clip_zs \
      --workdir /tmp/tc_clip_zs_eval --config.data.root=~/data/hmdb51 \
      --split hmdb51=~/data/hmdb51/test_split1.txt:~/data/hmdb51/labels.txt  # x 3 splits

Zero-shot's WiSE-FT (0.7 of the trained weights plus 0.3 of CLIP's; the prompt, VP and
bias parameters stay trained), then the same split evaluation on its output:

  python -m vidjax.wise_ft --initial /tmp/tc_clip_init --finetuned /tmp/tc_clip_zs/best \
      --alpha 0.7 --output /tmp/tc_clip_zs_wise

Files each protocol reads (not shipped: the TC-CLIP repository's `datasets_splits/`,
`labels/` and FROSTER's `labels_froster/` hold them; convert their lists to vidjax's
`path label` lines): zero_shot trains on `data.root`'s Kinetics-400 lists and evaluates
each split with scripts/tc_clip_splits.py (`--split NAME=LIST:LABELS`, nine for HMDB51,
UCF101 and K600's novel classes); few_shot reads `{hmdb51,ucf101,sthv2}_train_split_1_
{K}shot.txt`; base2novel `base2novel/base_train_{1,2,3}.txt` and `base2novel/base_val.txt`
with `model.label_file` naming the base classes (the novel ones go to tc_clip_splits.py);
llm `labels_llm.txt`. `model.label_file` takes one name a line, upstream's `id,name` CSVs
and FROSTER's `{"id": "Name: description"}` JSON as they are.

Expected (upstream's README, not reproduced here): zero-shot HMDB51 / UCF101 / K600
54.2 / 82.9 / 75.8 top-1; fully supervised K400 85.2 / 96.9.

Training augmentation as upstream, with per-frame colour jitter (data.color_jitter_prob 0.8,
strengths data.color_jitter) and grayscale (data.grayscale_prob 0.2). Not in vidjax's
pipeline: multi-view test frames at random offsets (vidjax spaces them evenly).

Variants (parts joined by ','; at most one of each kind):
  protocol  zero_shot (default: train on Kinetics-400, test 2 clips x 1 crop)
            few_shot (hmdb51 | ucf101 | sthv2, shots k2 | k4 | k8 | k16)
            base2novel (k400 | hmdb51 | ucf101 | sthv2, base split s1 | s2 | s3)
            fully_supervised (Kinetics-400, test 4 clips x 3 crops)
  llm       FROSTER's LLM class descriptions as class names, context length 77
  demo      toy TC-CLIP (2 layers of width 64, 8x8 patches, 6 context tokens) on the
            embedded demo data set, from scratch (CPU, minutes):
            python -m vidjax.main --config configs/tc_clip.py:demo --workdir /tmp/tc_demo
  smoke     the toy model on 4 frames of 32x32, for tests.
"""

import ml_collections

from vidjax.recipes import tc_clip, variant

DATASETS = ("k400", "hmdb51", "ucf101", "sthv2")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  v = variant.parse(arg, __file__, test=tuple(tc_clip.PROTOCOLS), dataset=DATASETS,
                    sampling=tc_clip.SHOTS + tc_clip.BASE_SPLITS, model=("llm",),
                    run=variant.RUNS)
  protocol = v.test or "zero_shot"
  if protocol == "few_shot" and (v.sampling not in tc_clip.SHOTS or
                                 v.dataset not in ("hmdb51", "ucf101", "sthv2")):
    raise v.error("few_shot needs a data set (hmdb51 | ucf101 | sthv2) and shots "
                  "(k2 | k4 | k8 | k16), e.g. few_shot,hmdb51,k16")
  if protocol == "base2novel" and (v.sampling not in tc_clip.BASE_SPLITS or not v.dataset):
    raise v.error("base2novel needs a data set (k400 | hmdb51 | ucf101 | sthv2) and a base "
                  "split (s1 | s2 | s3), e.g. base2novel,ucf101,s1")
  if protocol in ("zero_shot", "fully_supervised") and (v.sampling or v.dataset not in
                                                        ("", "k400")):
    raise v.error(f"{protocol} trains on Kinetics-400 and takes no shots or base split")
  if v.model == "llm" and v.dataset == "sthv2":
    raise v.error("Something-Something v2 has no LLM class descriptions")
  config = tc_clip.tc_clip_config(protocol, v.dataset, v.sampling, llm=v.model == "llm")
  if v.run == "demo":
    tc_clip.demo(config)
  elif v.run == "smoke":
    tc_clip.smoke(config)
  return config
