"""Model backbones shared across plugin kinds and by tests: a library, not plugins.

``clip`` (CLIP scoring and each reward's reference preprocessing), ``blip`` and ``open_clip`` (converters
from the original checkpoint layouts to transformers' models), ``tower_speed`` (speed switches of reward
towers), ``diffusers`` (dtype and prediction-type helpers of the diffusers priors), ``tokenizers`` (tiny
tokenizers for random-weight checkpoints).
"""
