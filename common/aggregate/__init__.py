"""Tables, figures, the cross-paper summary and README sections, built from runs' metrics.json.

Called by the workflow's aggregate rules (``python -m common.aggregate <table|figures|summary|readmes>``,
see :mod:`.cli`). Modules: :mod:`.runs` (loading), :mod:`.stats` (per-setting statistics, matrix, calibration
view), :mod:`.claims` (each claim's test chosen from the design, the family adjustment, verdict words),
:mod:`.power` (detectable effect and seeds needed for the test run), :mod:`.validate` (plan-time claim checks),
:mod:`.render` (Markdown/LaTeX), :mod:`.templates` (the generated files' prose), :mod:`.figures`,
:mod:`.lambdas` (attention/area lambda plots a paper's figure hook uses).
"""
import pandas as pd  # noqa: F401

from .claims import CLAIM_COLUMNS, OUTCOMES, claim_design, claims_table, outcome  # noqa: F401
from .cli import AGGREGATE_FORMAT, main  # noqa: F401
from .figures import figures, save_fig  # noqa: F401
from .render import (  # noqa: F401
                     calibration_markdown,
                     claims_markdown,
                     fmt,
                     matrix_markdown,
                     replace_block,
                     summary_tex,
                     wide_markdown,
)
from .runs import REPORTED_COLUMNS, load_reported, load_runs, read_benchmark_files, scalar_metrics  # noqa: F401
from .stats import LOWER_BETTER, MAIN, PERCENT, calibration_table, long_table, matrix  # noqa: F401
from .validate import validate_claims, validate_paper  # noqa: F401,E402
