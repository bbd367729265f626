"""Figure hook of MixPro: per-epoch attention/area lambdas and the progressive factor alpha
(``common.aggregate.lambdas``)."""
from common.aggregate.lambdas import make_figures, plot_lambdas  # noqa: F401
