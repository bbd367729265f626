"""CutMix (Yun et al., ICCV 2019): the method and PyramidNet (its datasets cifar100 / imagenet are in common/)."""
from . import method, pyramidnet  # noqa: F401  (registers "cutmix", "pyramidnet")
