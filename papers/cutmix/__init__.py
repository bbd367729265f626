"""CutMix (Yun et al., ICCV 2019): the method, PyramidNet, and the cifar100 / imagenet datasets."""
from . import datasets, method, pyramidnet  # noqa: F401  (registers "cutmix", "pyramidnet", "cifar100", "imagenet")
