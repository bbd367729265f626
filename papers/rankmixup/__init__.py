"""RankMixup (Noh et al., ICCV 2023): ranking-based mixup for calibration, its baselines
(label smoothing, focal loss), the paper's ResNets, calibration tables and plots."""
from . import baselines, method, models  # noqa: F401  (registrations)
