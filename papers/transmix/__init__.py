"""TransMix (Chen et al., CVPR 2022): registers ``deit_mix`` and ``transmix``."""
from . import method  # noqa: F401
