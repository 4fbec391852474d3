"""Models: `build_model(config.model) -> flax.linen.Module` (design.md 'Models').

    module = build_model(config.model)
    variables = module.init(jax.random.key(0), clips, train=False)  # clips [B, T, H, W, 3]
    logits = module.apply(variables, clips, train=False)             # [B, num_classes]
    logits, updates = module.apply(variables, clips, train=True,
                                   mutable=["batch_stats"], rngs={"dropout": key})

From a config to its parts, one hop each: `model.name` -> recognizers.py;
`model.backbone.name` -> backbones/<name>.py; `model.head.name` -> heads/<name>.py;
`model.neck.name` -> necks/<name>.py; `model.<temporal field>` -> temporal/<file>.py
(shift.py, non_local.py, gc.py for `ecal`); `model.name = "clip"` -> clip/ (CLIP towers and
the frame-wise CLIP video classifier). Every part registers itself (registry.py).
"""

from vidjax.models.registry import (build_model, default_config, example_input_shape,
                                    frozen_param_mask, known, register, resolve_model_config)

# Importing registers the built-in parts (temporal modules before the recognizers, whose
# defaults list them).
from vidjax.models import backbones as _backbones  # noqa: F401  isort: skip
from vidjax.models import heads as _heads  # noqa: F401  isort: skip
from vidjax.models import necks as _necks  # noqa: F401  isort: skip
from vidjax.models import temporal as _temporal  # noqa: F401  isort: skip
from vidjax.models import recognizers as _recognizers  # noqa: F401  isort: skip
from vidjax.models import clip as _clip  # noqa: F401  isort: skip

__all__ = ["build_model", "default_config", "example_input_shape", "frozen_param_mask",
           "known", "register", "resolve_model_config"]
