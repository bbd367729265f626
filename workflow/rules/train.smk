"""Training: one job per run of the plan (workflow/rules/common.smk), launched by common/launch.py."""
from common import launch


wildcard_constraints:
    scale="quick|cpu|paper",
    run_id=r"[A-Za-z0-9_+\-]+",
    paper=r"[a-z0-9_]+",


# per run: CPUs, GPUs, memory and walltime of its job (capped by the SLURM profile's partitions),
# processes and walltime chaining of the launcher
RUN_RESOURCES = launch.RuleResources(run_config, config["partitions"], config["checkpoint_lead_s"])


rule train:
    """One training run: resolved config -> metrics.json (+ epochs.jsonl). The `code` input is the
    core code directory, whose timestamp only counts for runs common.codehash finds stale (train_code).
    Threads are the job's CPUs: the run's resources.cpus, or the profile's set-threads (profiles/default)."""
    input:
        code=train_code,
    output:
        metrics="results/{scale}/runs/{run_id}/metrics.json",
        epochs="results/{scale}/runs/{run_id}/epochs.jsonl",
    conda:
        ENV
    log:
        "results/{scale}/logs/{run_id}.log",
    benchmark:
        "results/{scale}/benchmarks/{run_id}.tsv"
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
        "--out results/{wildcards.scale}/runs/{wildcards.run_id} > {log:q} 2>&1"
