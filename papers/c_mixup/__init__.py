"""C-Mixup (Yao et al., NeurIPS 2022): the kernel partner sampler, its official baselines and the
LSTNet-style model for the time-series tasks."""
from . import lstnet, method  # noqa: F401  (registers c_mixup, mixup_global, manifold_mixup_global, lstnet)
