from . import method  # noqa: F401  (registers "mixup" and "manifold_mixup")
