"""Training: one job per run of the plan (workflow/rules/common.smk)."""


wildcard_constraints:
    scale="quick|cpu|paper",
    run_id=r"[A-Za-z0-9_+\-]+",
    paper=r"[a-z0-9_]+",


rule train:
    """One training run: resolved config -> metrics.json (+ epochs.jsonl). The `code` input is the
    core code directory, whose timestamp only counts for runs common.codehash finds stale (train_code).
    The run directory is the one of the declared output, so a rule reusing this one (verify_train)
    trains the same command into its own tree."""
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
        launcher=launcher,
    threads: 1  # the profiles set it (set-threads: train)
    resources:
        gpu=run_gpus,
        mem_mb=run_mem_mb,
        runtime=run_runtime,
    shell:
        "OMP_NUM_THREADS={threads} "
        "{params.launcher} -m common.train --config-json {params.cfg:q} "
        "--out \"$(dirname {output.metrics:q})\" > {log:q} 2>&1"
