"""MixPro (Zhao et al., ICLR 2023): registers ``maskmix`` and ``mixpro`` (the DeiT mixing baseline
``deit_mix`` lives in ``papers/transmix``)."""
from . import method  # noqa: F401
