"""`snakemake verify`: retrain a sample of a scale's committed runs on this machine and compare them with
the committed ones (common.verify; README, *Reproducibility*).

    snakemake verify                                          # quick: trains the quick runs first, reruns all
    snakemake verify --config verify_runs='[ID1,ID2]'         # quick: trains and reruns those two
    snakemake verify --config scale=cpu verify_budget=30      # CPU-minutes: calibration + a sample
    snakemake verify --config scale=cpu verify_runs='[ID1,ID2]'

Everything goes to results/<scale>/verify/<machine id>/ (runs/, benchmarks/, calibration.json, plan.json,
report.md, report.json; the reruns are the train rule's jobs with {tree} = <scale>/verify/<machine id>, their
logs under logs/); committed runs and aggregates are never written. At a committed scale
the committed runs are read as they are, never scheduled (a stale one is not retrained in place)."""
from common.config import COMMITTED_SCALES
from common.verify.cli import plan_arguments, rerun_targets
from common.verify.machine import effective_hardware, machine_id

VERIFY_DIR = f"results/{SCALE}/verify/{machine_id(effective_hardware())}"
VERIFY_PAPERS = f"--papers {' '.join(PLAN.subset)}" if PLAN.subset else ""
VERIFY_LOGS = f"logs/{VERIFY_DIR.removeprefix('results/')}"
VERIFY_CALIBRATE = config["verify_budget"] is not None and not config["verify_runs"]


rule verify_calibrate:
    """One training epoch per model kind here, against the committed runs' epochs: the rescaling of the
    committed times that the budget is spent by."""
    output:
        f"{VERIFY_DIR}/calibration.json",
    log:
        f"{VERIFY_LOGS}/calibrate.log",
    conda:
        ENV
    shell:
        f"python -m common.verify calibrate --scale {SCALE} {VERIFY_PAPERS} --out {{output:q}} > {{log:q}} 2>&1"


checkpoint verify_plan:
    """The runs to retrain: verify_runs, or a sample within verify_budget (common.verify.select)."""
    input:
        calibration=[f"{VERIFY_DIR}/calibration.json"] if VERIFY_CALIBRATE else [],
        runs=[PLAN.run_file(r, "metrics.json") for r in config["verify_runs"] or sorted(PLAN.runs)]
        if SCALE not in COMMITTED_SCALES else [],
    output:
        f"{VERIFY_DIR}/plan.json",
    params:
        args=lambda wc, input: plan_arguments(config["verify_budget"], config["verify_runs"], input.calibration),
    log:
        f"{VERIFY_LOGS}/plan.log",
    conda:
        ENV
    shell:
        f"python -m common.verify plan --scale {SCALE} {VERIFY_PAPERS} {{params.args}} --out {{output:q}} > {{log:q}} 2>&1"


rule verify:
    """Compare each rerun with its committed run and recompute the claims with the reruns; the report's
    one-line summary is printed at the end."""
    input:
        plan=f"{VERIFY_DIR}/plan.json",
        reruns=lambda wc: rerun_targets(checkpoints.verify_plan.get().output[0], VERIFY_DIR),
    output:
        md=f"{VERIFY_DIR}/report.md",
        json=f"{VERIFY_DIR}/report.json",
    log:
        f"{VERIFY_LOGS}/report.log",
    conda:
        ENV
    shell:
        f"python -m common.verify report --scale {SCALE} --plan {{input.plan:q}} --verify-dir {VERIFY_DIR} "
        "--out-md {output.md:q} --out-json {output.json:q} 2> {log:q}"
