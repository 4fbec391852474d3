"""PyTorch references of the upstream models, one module per converter source
(converters/NAME.py <-> NAME.py here), written from the specs in reference/ with the
upstream module names, so that their state_dicts have the upstream key layouts.

Each zoo model has a builder `NAME(config, clip, seed) -> nn.Module`: the reference for
`config.model`, with random weights and BatchNorm statistics measured on `clip` and then
perturbed (common.py), in eval mode. tests/test_parity.py's table calls them.
"""
