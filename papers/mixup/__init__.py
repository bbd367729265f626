from . import method  # noqa: F401  (registers "mixup" and "manifold_mixup")
from . import models  # noqa: F401  (registers "preact_resnet18")
from . import timm_reference  # noqa: F401  (registers "timm_mixup": timm.data.Mixup as a reference)
