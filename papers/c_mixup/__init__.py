"""C-Mixup (Yao et al., NeurIPS 2022): the kernel partner sampler, its official baselines, the
LSTNet-style model for the time-series tasks and the regression datasets."""
# registers the methods c_mixup, mixup_global, manifold_mixup_global, the model lstnet and the datasets
# diabetes, airfoil, no2, exchange_rate, electricity, communities, skillcraft
from . import data, lstnet, method  # noqa: F401
