"""Building blocks that config files start from: trainer defaults and the demo data set.

Config files stay data: they call these for the common fields and then set their
recipe's values. Every field is documented here once.
"""

from __future__ import annotations

import ml_collections

from vidjax.data import demo


def trainer_defaults() -> ml_collections.ConfigDict:
  """Fields of the loop that every config has."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.batch_size = 64                # global, over all devices and processes
  c.total_steps = -1               # > 0: stop after this many steps; the lr schedule still
                                   # spans optim.epochs, so a run can be stopped and extended
  c.label_smoothing = 0.0
  c.log_every_steps = 50
  c.eval_every_steps = -1          # <= 0: only at the end
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  c.best_metric = ""               # e.g. "eval/top1": also keep the variables of the eval
                                   # with the best value in WORKDIR/best (best.json names
                                   # the step); "" = off
  c.best_metric_mode = "auto"      # max | min | auto (min for a loss, else max)
  c.check_finite = True            # stop on a NaN/inf loss, naming the step
  c.init_from = ""                 # variables dir or workdir (converter output, ImageNet init)
  c.init_from_drop = r"(^|/)(fc|fc_cls|new_fc)/"   # reinitialised when their shape differs
  # Devices and sharding (vidjax/train/sharding.py).
  c.cpu_devices = 0                # > 0: the CPU backend as this many devices; -1: one
                                   # per core, fastest on a CPU host; 0: JAX's default, one
  c.mesh = (("data", -1),)         # (axis, size) over data, fsdp, model; -1 = the rest
  c.partition_rules = (            # (regex on the state leaf path, spec), first match wins;
      (r"(^|/)batch_stats/", "replicate"),  # spec: "replicate", "fsdp" or a tuple of
      (r".*", "fsdp"),             # mesh axis names / None per dimension
  )
  c.fsdp_min_size = 2 ** 14        # "fsdp" shards tensors of at least this many elements
  c.bn_group_size = 0              # BatchNorm statistics over: 0 the global (micro)batch;
                                   # -1 each device's rows (PyTorch DDP without SyncBN);
                                   # N groups of N clips (a DDP recipe's per-GPU batch)
  # Memory and speed.
  c.grad_accum_steps = 1           # k > 1: k microbatches of batch_size / k per step
                                   # (rematerialised blocks: model.backbone.remat)
  # XLA compiler options of the jitted train step, per backend (vidjax/train/xla_options.py).
  # On CPU, YNNPACK also takes the elementwise ops, which speeds up the train step.
  c.xla_options = ml_collections.ConfigDict(dict(
      cpu=dict(xla_cpu_experimental_ynn_fusion_type="dot,individual_convolution,reduce,eltwise"),
  ))
  # Several hosts: jax.distributed.initialize; empty address = single process, unless
  # the environment (JAX_COORDINATOR_ADDRESS, SLURM, TPU pods, ...) defines the cluster.
  c.distributed = ml_collections.ConfigDict(dict(
      coordinator_address="",      # "host:port" of process 0
      num_processes=0,             # 0: from the environment
      process_id=-1,               # -1: from the environment
      auto=False,                  # True: jax.distributed.initialize() from the environment
      cpu_collectives="gloo",      # cross-process collectives of the CPU backend
  ))
  c.eval = ml_collections.ConfigDict(dict(
      batch_size=64,               # not a multiple of the devices (one process): each
                                   # clip's frames are split over them instead
      num_views=1,                 # temporal views per clip, folded into the batch
      fusion="mean_softmax",       # mean_softmax | mean_logits | max_softmax
      output_dir="",               # per-video scores, per-class table, confusion PNG
                                   # (vidjax/train/eval_outputs.py); "": WORKDIR/eval
      # XLA compiler options of the jitted eval step (and the benchmark's inference), per
      # backend. On CPU, XLA's own fusions: the train step's elementwise-in-YNNPACK
      # setting slows inference down (scripts/README.md).
      xla_options=ml_collections.ConfigDict(dict(cpu=ml_collections.ConfigDict())),
  ))
  return c


def data_config(**overrides) -> ml_collections.ConfigDict:
  """The `data` section. `name="demo"` is the embedded, generated data set.

  A real data set is an annotation list (`format`) under `root`, with label names; see
  vidjax/data/sources.py for the list formats.
  """
  d = ml_collections.ConfigDict(dict(
      name="kinetics400",
      format="videos",     # videos | frames | kinetics_csv | tfds | audio_features (name
                           # "demo": generated; "audio_demo": its sounds, audio_demo_data)
      root="~/data/kinetics400",
      train_list="kinetics400_train_list_videos.txt",   # relative: under root, else
      eval_list="kinetics400_val_list_videos.txt",      # the working directory
      label_names="",      # class names, one a line (kinetics_csv: maps names to labels)
      num_classes=400,
      multi_label=False,   # lists with several labels a line; labels become multi-hot [K]
      filename_tmpl="img_{:05d}.jpg",   # frames: file of frame i is tmpl.format(i + start)
      start_index=1,
      csv_path_tmpl="{youtube_id}_{time_start:06d}_{time_end:06d}.mp4",   # kinetics_csv
      tfds_name="",        # tfds: the builder name (e.g. "ucf101/ucf101_1_256"), read
      tfds_data_dir="",    #   with tfds.data_source from tfds_data_dir
      train_split="train",
      eval_split="test",
      video_key="video",   # tfds: feature with frames [N, H, W, 3] or encoded video bytes
      label_key="label",
      # Training from several sources at once (OmniSource; vidjax/data/mixture.py): a
      # tuple of dicts {name, kind: videos | images, root, list, format, share: clips per
      # batch (int) or ratio of batch_size (float), label_map: dict or file}; () = the
      # train list alone. An epoch is a pass over the first. Evaluation: eval_list only.
      sources=(),
      # Sampling (vidjax/data/sampling.py).
      sampler="segments",  # segments: TSN, T = num_frames segments, one frame each;
                           # dense: num_frames consecutive frames frame_interval apart
      num_frames=8,        # T: frames per clip
      frame_interval=1,    # dense only (MMAction2 clip_len x frame_interval x num_clips)
      out_of_bound="loop", # dense only, short videos: loop | repeat_last (MMAction2)
      # Test protocol: views = test_clips temporal clips x the crops of test_crop, crop-major;
      # config.eval.num_views must equal it (test_clips=0: eval.num_views / crops).
      test_clips=0,
      test_sampling="uniform",   # uniform | twice (TSM, 2 clips) | ten_clips (TCPNet offsets)
                                 # | mmaction2_3d (dense: MMAction2 1.x's 3D test clips)
      test_scale=256,      # short side before the test crops (0: keep)
      test_crop="center",  # center | three_crop | ten_crop | full_res_three (TSM/TCPNet)
      # Training transforms (vidjax/data/transforms.py).
      image_size=224,      # crop side S of train and test clips
      train_resize=256,    # short side before the train crop (0: keep)
      train_crop="multi_scale",  # multi_scale (TSN) | random_resized | center | none
      scales=(1.0, 0.875, 0.75, 0.66),   # multi_scale: crop sides / short side
      max_distort=1,
      fix_crop=True,       # multi_scale: the 5 fixed positions (13 with more_fix_crop)
      more_fix_crop=True,
      area_range=(0.08, 1.0),            # random_resized
      aspect_ratio_range=(0.75, 4 / 3),
      flip=True,           # horizontal flip, probability 0.5
      flip_label_map=(),   # pairs (a, b) swapped by a flip (Something-Something)
      # Photometric, after the flip (vidjax/data/color.py; torchvision's on PIL, per frame).
      color_jitter_prob=0.0,   # per clip: probability of colour jitter, each frame then
                               # drawing its own factors and order (TC-CLIP: 0.8)
      color_jitter=(0.4, 0.4, 0.2, 0.1),   # strengths: brightness, contrast, saturation
                               # factors in [1 - s, 1 + s], hue shift in [-s, s] turns
      grayscale_prob=0.0,      # per clip: probability of greying every frame (TC-CLIP: 0.2)
      # Mixing, in the train step on device (vidjax/train/mix.py); 0 = off.
      mixup_alpha=0.0,
      cutmix_alpha=0.0,
      mix_switch_prob=0.5,  # both on: probability of CutMix for a batch
      # Demo data set only.
      source_frames=16,    # frames generated per demo video, sampled down to num_frames
      train_examples=0,
      eval_examples=0,
      seed=0,
      # Loader.
      num_workers=0,       # grain worker processes; 0 = in the main process
      num_threads=2,       # grain reader threads (per worker)
      prefetch=4,          # batches buffered per worker
      decode_threads=1,    # PyAV threads per reader: the workers are the parallelism
      seek=True,           # dense clips: start decoding at the keyframe before the clip
      jpeg_backend="auto", # frames: auto (OpenCV if installed, else PIL) | cv2 | pil
  ))
  d.update(overrides)
  return d


def demo_data(**overrides) -> ml_collections.ConfigDict:
  """The embedded demo data set at the size the demo variants train on a CPU."""
  # 4 of 8 generated frames at 32x32: ResNet-50 takes ~1.6 s per batch of 16 such clips
  # (fwd+bwd) on a 2-core CPU, so one epoch of 1920 clips fits the demo's minutes.
  # Generated at the model's size: no resize or crop; no flip (it would swap the
  # left/right classes).
  d = data_config(name="demo", format="demo", root="", train_list="", eval_list="",
                  num_classes=0, num_frames=4, image_size=32, source_frames=8,
                  train_examples=1920, eval_examples=384, train_resize=0, train_crop="none",
                  flip=False, test_scale=0)
  d.update(overrides)
  return d


def use_demo(config: ml_collections.ConfigDict, *, lr: float = 1e-3,
             epochs: float = 1.0) -> None:
  """Switches `config` to its 'demo' variant: the same architecture on the embedded demo
  data set, trained from scratch (no ImageNet weights here) on a CPU.

  AdamW with a cosine schedule, where the recipes' SGD needs ImageNet initialisation;
  the recipe's parameter groups are dropped (a config may set its own after this).
  """
  config.data = demo_data()
  config.model.num_classes = len(demo.CLASS_NAMES)
  config.batch_size = 16
  config.eval.batch_size = 64
  config.optim.update(name="adamw", lr=lr, weight_decay=0.05, epochs=epochs,
                      schedule="cosine", warmup_epochs=0.15)
  config.optim.param_groups = ()
  config.log_every_steps = 20
  config.checkpoint_every_steps = 60


def use_smoke(config: ml_collections.ConfigDict, *, num_frames: int = 4,
              source_frames: int = 8, depth: int = 18, epochs: float = 3.0) -> None:
  """Switches `config` to its 'smoke' variant, the tiniest model of the family for tests:
  a ResNet of `depth`, 32 training clips of `num_frames` frames at 32x32."""
  config.data = demo_data(num_frames=num_frames, image_size=32, source_frames=source_frames,
                          train_examples=32, eval_examples=20)
  config.model.num_classes = len(demo.CLASS_NAMES)
  config.model.backbone.depth = depth
  config.batch_size = 8
  config.eval.batch_size = 8
  config.optim.update(lr=0.01, epochs=epochs, schedule="cosine")
  config.log_every_steps = 2
  config.checkpoint_every_steps = 2


# --- Audio features (MMAction2's audio recognizers; vidjax/data/audio.py) -----------------

def audio_data(**overrides) -> ml_collections.ConfigDict:
  """The `data` section of audio feature lists (`data.format = "audio_features"`): one
  `path num_frames label` line per `.npy` log-mel file (scripts/extract_audio_features.py),
  num_frames being its video's frame count.

  A clip is `num_frames` consecutive video frames (MMAction2's SampleFrames clip_len,
  dense sampling, a random start in training, the centred clip at test) read as
  `audio_length` feature rows (its AudioFeatureSelector's fixed_length) of `audio_bins`
  mel bins; there is no spatial transform or flip.
  """
  d = data_config(format="audio_features", sampler="dense", num_frames=64, frame_interval=1,
                  test_clips=1, test_sampling="mmaction2_3d", test_crop="center",
                  train_resize=0, train_crop="none", flip=False, test_scale=0)
  d.audio_length = 128   # feature rows per clip (AudioFeatureSelector's fixed_length)
  d.audio_bins = 80      # mel bins per row; a file with another count is skipped
  d.update(overrides)
  return d


def audio_demo_data(**overrides) -> ml_collections.ConfigDict:
  """The audio form of the demo data set (vidjax/data/demo_audio.py: generated sounds as
  log-mel features, 6 classes), at the size the audio demo variants train on a CPU."""
  d = audio_data(name="demo", format="audio_demo", root="", train_list="", eval_list="",
                 num_classes=0, train_examples=1920, eval_examples=384)
  d.update(overrides)
  return d


def use_audio_demo(config: ml_collections.ConfigDict, **kwargs) -> None:
  """`use_demo` for an audio config: the same model and optimiser on the audio demo data."""
  from vidjax.data import demo_audio  # pylint: disable=g-import-not-at-top
  use_demo(config, **kwargs)
  config.data = audio_demo_data()
  config.model.num_classes = demo_audio.NUM_CLASSES


def use_audio_smoke(config: ml_collections.ConfigDict, **kwargs) -> None:
  """`use_smoke` for an audio config: clips of 16 video frames as 32 feature rows."""
  from vidjax.data import demo_audio  # pylint: disable=g-import-not-at-top
  use_smoke(config, **kwargs)
  config.data = audio_demo_data(num_frames=16, audio_length=32, train_examples=32,
                                eval_examples=20)
  config.model.num_classes = demo_audio.NUM_CLASSES
