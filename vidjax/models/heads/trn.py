"""MMAction2's TRNHead (reference/mmaction2_cost.md section 14): multi-scale temporal
relations over the frames' features. Registered as 'trn'.

Per frame: average pool, dropout, `fc` (upstream `cls_head.fc_cls`, C -> hidden_dim);
then for each scale s = T, T-1, ..., 2 an MLP `fc_fusion_scales_{i}_{1,3}` (i = T - s;
upstream `cls_head.consensus.fc_fusion_scales.{i}.{1,3}`: ReLU, Linear(s * hidden ->
bottleneck), ReLU, Linear(bottleneck -> K)) reads the features of s frames concatenated
in time order; the scale-T relation (all frames) is always used, each smaller scale
takes `subsample` of its frame tuples (`itertools.combinations(range(T), s)`, in that
lexicographic order); every relation's logits are summed.

Which tuples: upstream draws them with NumPy's global RNG at every forward, test time
included (`np.random.choice(n_tuples, 3, replace=False)`, scales T-1 down to 2). Here:
  - eval: from `numpy.random.RandomState(relation_seed)`, the same calls in the same
    order, drawn when the model is traced; so `relation_seed=S` reproduces upstream's
    forward right after `np.random.seed(S)`, and a fixed seed makes evaluation
    deterministic (every eval batch sees the same tuples).
  - training: from the 'dropout' rng stream, new tuples at every step, uniform without
    replacement as upstream's.
"""

from __future__ import annotations

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vidjax.models.heads.classifier import classifier_defaults
from vidjax.models.layers import Dtype, global_avg_pool
from vidjax.models.registry import register

# torch.nn.Linear's default init (kaiming_uniform with a = sqrt(5)): U(+-1 / sqrt(fan_in)).
_TORCH_LINEAR = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def relation_tuples(num_segments: int, subsample: int = 3,
                    seed: int | None = None) -> list[np.ndarray]:
  """The frame tuples of each scale T, T-1, ..., 2: [1, T] for the full scale, then
  [min(subsample, n), s] drawn from `numpy.random.RandomState(seed)` in upstream's call
  order; with seed None, every tuple of each scale (for callers that draw themselves)."""
  rs = None if seed is None else np.random.RandomState(seed)
  out = []
  for s in range(num_segments, 1, -1):
    combos = np.asarray(list(itertools.combinations(range(num_segments), s)), np.int32)
    if s < num_segments and rs is not None:
      combos = combos[rs.choice(len(combos), min(subsample, len(combos)), replace=False)]
    out.append(combos)
  return out


class TRNHead(nn.Module):
  """[B*T, h, w, C] frame features -> relation logits [B, K].

  Attributes:
    num_classes: K.
    num_segments: T the MLPs are built for (upstream 8).
    hidden_dim: the per-frame fc's width (256).
    bottleneck_dim: each relation MLP's hidden width (256).
    subsample: tuples drawn per scale below T (3).
    relation_seed: the eval draws' seed (`config.model.relation_seed`; the module docstring).
    dropout_rate: before the per-frame fc (MMAction2's TRN: 0.8).
    init_std: the per-frame fc's weight init std (0.001).
  """
  num_classes: int
  num_segments: int = 8
  hidden_dim: int = 256
  bottleneck_dim: int = 256
  subsample: int = 3
  relation_seed: int = 0
  dropout_rate: float = 0.8
  init_std: float = 0.001
  dtype: Dtype = jnp.float32

  def _relation_mlp(self, i: int, x: jax.Array) -> jax.Array:
    x = nn.Dense(self.bottleneck_dim, dtype=self.dtype, kernel_init=_TORCH_LINEAR,
                 name=f"fc_fusion_scales_{i}_1")(nn.relu(x))
    return nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=_TORCH_LINEAR,
                    name=f"fc_fusion_scales_{i}_3")(nn.relu(x))

  @nn.compact
  def __call__(self, x: jax.Array, num_segments: int, train: bool = False) -> jax.Array:
    """x: [B*T, h, w, C] (rows b*T + t) -> logits [B, num_classes] float32."""
    t = num_segments
    if t != self.num_segments:
      raise ValueError(f"TRNHead is built for model.head.num_segments={self.num_segments} "
                       f"frames, got clips of {t}")
    x = nn.Dropout(self.dropout_rate)(global_avg_pool(x).astype(self.dtype),
                                      deterministic=not train)
    x = nn.Dense(self.hidden_dim, dtype=self.dtype,
                 kernel_init=nn.initializers.normal(self.init_std),
                 bias_init=nn.initializers.zeros, name="fc")(x)
    x = x.reshape(-1, t, self.hidden_dim)                      # [B, T, D]
    b = x.shape[0]
    seeded = not train or self.is_initializing()   # eval: the seed's tuples, fixed
    tuples = relation_tuples(t, self.subsample, self.relation_seed if seeded else None)
    logits = self._relation_mlp(0, x.reshape(b, t * self.hidden_dim))
    for i, combos in enumerate(tuples[1:], start=1):
      s = combos.shape[1]
      if not seeded:   # training: fresh tuples every step
        pick = jax.random.choice(self.make_rng("dropout"), len(combos),
                                 (min(self.subsample, len(combos)),), replace=False)
        combos = jnp.asarray(combos)[pick]
      rel = x[:, combos].reshape(b, combos.shape[0], s * self.hidden_dim)   # [B, k, s*D]
      logits = logits + self._relation_mlp(i, rel).sum(axis=1)
    return logits.astype(jnp.float32)


def trn_head_defaults() -> ml_collections.ConfigDict:
  cfg = classifier_defaults("trn", 0.001,
                            num_segments=8,      # T: the MLPs read s x hidden_dim inputs
                            hidden_dim=256, bottleneck_dim=256,
                            subsample=3)         # tuples per scale below T
  cfg.dropout_rate = 0.8
  return cfg


@register("head", "trn", trn_head_defaults)
def build_trn_head(cfg: ml_collections.ConfigDict, model_cfg: ml_collections.ConfigDict,
                   dtype) -> TRNHead:
  if cfg.num_segments < 2 or cfg.subsample < 1:
    raise ValueError(f"model.head: TRN needs num_segments >= 2 and subsample >= 1, got "
                     f"{cfg.num_segments} and {cfg.subsample}")
  return TRNHead(num_classes=int(model_cfg.num_classes), num_segments=int(cfg.num_segments),
                 hidden_dim=int(cfg.hidden_dim), bottleneck_dim=int(cfg.bottleneck_dim),
                 subsample=int(cfg.subsample), relation_seed=int(model_cfg.relation_seed),
                 dropout_rate=float(cfg.dropout_rate), init_std=float(cfg.fc_init_std),
                 dtype=dtype)
