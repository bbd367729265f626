"""Figure hook of TransMix: per-epoch attention and area lambdas (``common.aggregate.lambdas``)."""
from common.aggregate.lambdas import make_figures, plot_lambdas  # noqa: F401
