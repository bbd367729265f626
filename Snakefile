"""mixrepro: one DAG that trains every run of every paper at one scale and builds the tables,
figures, cross-paper summary and README blocks from them.

    snakemake                                   # quick scale (digits; no files, no network)
    snakemake --config scale=cpu                # real datasets on CPU (results are committed)
    snakemake --config scale=paper --workflow-profile profiles/slurm
    snakemake --config papers='[cutmix]'        # one paper only (nothing cross-paper is written)
    snakemake --report report.html              # self-contained report of the current scale

Runs are discovered from papers/*/experiments.yaml; a run's id derives from its resolved config, so
only missing, changed or stale-code runs execute, and a run requested by two papers trains once.
What is current is decided from file contents, never by writing file times (common.freshness).
Layout: workflow/rules/ (common: config, plan and helpers; train; aggregate; bench),
workflow/report/ (captions), workflow/schemas/ (this config's schema).
"""
import sys

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


sys.path.insert(0, workflow.basedir)


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/bench.smk"
include: "workflow/rules/verify.smk"


onsuccess:
    remove_stamps(ROOT, SCALE)


onerror:
    remove_stamps(ROOT, SCALE)


rule all:
    """The default target: every run of the scale, each paper's table and figures, and (for the whole
    paper set) the cross-paper aggregates and, at a committed scale, the README blocks (all_targets)."""
    input:
        all_targets(),
