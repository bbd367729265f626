"""Training: one job per run of the plan (workflow/rules/common.smk), launched by common/launch.py."""
from common import launch


wildcard_constraints:
    scale=re.escape(SCALE),  # aggregates: of the planned scale only
    # results/<scale> or, for the retraining check of another machine, results/<scale>/verify/<machine>
    tree=rf"({'|'.join(SCALES)})(/verify/[A-Za-z0-9_.\-]+)?",
    run_id=r"[A-Za-z0-9_+\-]+",
    paper=r"[a-z0-9_]+",


# per run: CPUs, GPUs, memory and walltime of its job (capped by the SLURM profile's partitions),
# processes and walltime chaining of the launcher
RUN_RESOURCES = launch.RuleResources(run_config, config["partitions"], config["checkpoint_lead_s"])


rule train:
    """One training run: resolved config -> metrics.json (+ epochs.jsonl). The outputs are update():
    Snakemake neither deletes them before the job nor keeps a failed job's version (it restores the
    previous one), so a failing retrain leaves committed results as they were. The `retrained` stamp
    (temporary) is what the default target asks for when the run is stale (common.freshness); logs
    go to logs/, which is not tracked.
    Threads are the job's CPUs: the run's resources.cpus, or the profile's set-threads (profiles/default).
    The run directory is the one of the declared output, so a rule reusing this one (verify_train)
    trains the same command into its own tree."""
    output:
        metrics=update("results/{tree}/runs/{run_id}/metrics.json"),
        epochs=update("results/{tree}/runs/{run_id}/epochs.jsonl"),
        retrained=temp(touch("results/{tree}/tmp/retrained/{run_id}")),
    conda:
        ENV
    log:
        "logs/{tree}/train/{run_id}.log",
    benchmark:
        "results/{tree}/benchmarks/{run_id}.tsv"
    params:
        cfg=run_config_json,
        launch=RUN_RESOURCES.args,
    threads: RUN_RESOURCES.threads
    resources:
        gpu=RUN_RESOURCES.gpus,
        mem_mb=RUN_RESOURCES.mem_mb,
        runtime=RUN_RESOURCES.runtime,
        slurm_partition=RUN_RESOURCES.partition,
    shell:
        "python -m common.launch --cpus {threads} {params.launch} -- -m common.train --config-json {params.cfg:q} "
        "--out \"$(dirname {output.metrics:q})\" > {log:q} 2>&1"
