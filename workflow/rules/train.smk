"""Training: one job per run of the plan (workflow/rules/common.smk)."""


wildcard_constraints:
    scale=re.escape(SCALE),  # aggregates: of the planned scale only
    # results/<scale> or, for the retraining check of another machine, results/<scale>/verify/<machine>
    tree=rf"({'|'.join(SCALES)})(/verify/[A-Za-z0-9_.\-]+)?",
    run_id=r"[A-Za-z0-9_+\-]+",
    paper=r"[a-z0-9_]+",


rule train:
    """One training run: resolved config -> metrics.json (+ epochs.jsonl). The outputs are update():
    Snakemake neither deletes them before the job nor keeps a failed job's version (it restores the
    previous one), so a failing retrain leaves committed results as they were. The `retrained` stamp
    (temporary) is what the default target asks for when the run is stale (common.freshness); logs
    go to logs/, which is not tracked."""
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
        launcher=launcher,
    threads: 1  # the profiles set it (set-threads: train)
    resources:
        gpu=run_gpus,
        mem_mb=run_mem_mb,
        runtime=run_runtime,
    shell:
        "OMP_NUM_THREADS={threads} "
        "{params.launcher} -m common.train --config-json {params.cfg:q} "
        "--out results/{wildcards.tree}/runs/{wildcards.run_id} > {log:q} 2>&1"
