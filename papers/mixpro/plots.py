"""Per-epoch lambda plots for MixPro runs: MaskMix area lambda (own image's share), PAL attention
lambda and the progressive factor alpha. Re-uses ``papers/transmix/plots.py``."""
from __future__ import annotations

from papers.transmix.plots import make_figures, plot_lambdas  # noqa: F401
