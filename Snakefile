"""mixrepro: one DAG that trains every run of every paper at one scale and builds the tables,
figures, cross-paper summary and READMEs from them.

    snakemake                                   # quick scale (digits; no files, no network)
    snakemake --config scale=cpu                # real datasets on CPU (results are committed)
    snakemake --config scale=paper --workflow-profile profiles/slurm
    snakemake --config papers='[cutmix]'        # one paper only
    snakemake --report report.html              # self-contained report of the current scale

Runs are discovered from papers/*/experiments.yaml; a run's id derives from its resolved
config, so only missing or changed runs execute, and a run requested by two papers trains once.
"""
import json
import os
import shlex
import sys
import time
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

sys.path.insert(0, workflow.basedir)
from common.config import plan, validate as validate_schema  # noqa: E402
from common.io import files_digest  # noqa: E402

# `python` in every job is the interpreter that runs Snakemake (whose environment has the packages),
# even when Snakemake was started by path without activating that environment
shell.prefix(f"set -euo pipefail; export PATH={shlex.quote(os.path.dirname(sys.executable))}:\"$PATH\"; ")


configfile: "config/config.yaml"


report: "report/workflow.rst"


validate_schema(config, "workflow.schema.json", "workflow config (config/config.yaml + --config)")

SCALE = config["scale"]
RUNS, BY_PAPER = plan(SCALE, workflow.basedir, config.get("papers") or None)
PAPERS = sorted(p for p, ids in BY_PAPER.items() if ids)
THREADS = int(config.get("threads_per_run", 1))
if config.get("data_root"):  # jobs inherit the environment
    os.environ.update(MIXREPRO_DATA=str(config["data_root"]))

wildcard_constraints:
    scale="quick|cpu|paper",
    run_id=r"[A-Za-z0-9_+\-]+",
    paper=r"[a-z0-9_]+",


def run_resources(key, default):
    return lambda wc: RUNS[wc.run_id]["resources"].get(key, default)


def files_of_paper(paper):
    """The paper's own aggregation inputs: its grid/claims, reported figures and plot/table hooks."""
    names = ("experiments.yaml", "reported.csv", "plots.py", "tables.py")
    return [f"papers/{paper}/{n}" for n in names if (Path(workflow.basedir) / "papers" / paper / n).exists()]


def paper_files(wc):
    return files_of_paper(wc.paper)


def aggregate_inputs(scale):
    """Every file the aggregates of `scale` are computed from: the runs' metrics.json and the
    papers' own files (grids and claims, reported figures, plot/table hooks)."""
    runs = [f"results/{scale}/runs/{rid}/metrics.json" for rid in sorted(RUNS)]
    return runs + [f for p in PAPERS for f in files_of_paper(p)]


def adopt_committed_aggregates(scale):
    """Mark committed aggregates up to date when they were built from exactly the current inputs.

    git checks files out in path order, so in a fresh clone figures/ is older than papers/ and
    results/<scale>/runs/, and Snakemake, having no metadata of its own yet, would rebuild every
    table and figure from modification times alone. The readmes rule (the last aggregate) records
    a content digest of aggregate_inputs() in results/<scale>/readmes.done; when the current inputs
    have that digest, the aggregate outputs are touched in DAG order (what `snakemake --touch`
    would do for them). Any other case is left to Snakemake's usual checks."""
    base = Path(workflow.basedir)
    res = base / "results" / scale
    stamp = res / "readmes.done"
    try:
        recorded = stamp.read_text().strip()
    except OSError:
        return
    inputs = aggregate_inputs(scale)
    if recorded != files_digest(inputs, base):
        return
    layers = [[res / "tables", *sorted((base / "figures" / scale).glob("*"))],
              [*sorted(res.glob("summary.*")), *sorted(res.glob("matrix.*")), res / "cross"], [stamp]]
    t = max([time.time_ns()] + [(base / f).stat().st_mtime_ns + 1_000_000 for f in inputs if (base / f).exists()])
    for i, layer in enumerate(layers):  # each layer strictly newer than the one it is built from
        for path in layer:
            for f in [*sorted(path.rglob("*")), path] if path.is_dir() else [path] if path.exists() else []:
                os.utime(f, ns=(t + i * 1_000_000, t + i * 1_000_000))


if workflow.is_main_process:  # not again inside each spawned cluster job
    adopt_committed_aggregates(SCALE)


def paper_digest(wc):
    """Content hash of paper_files: a params change reruns the table even though the default
    profile leaves mtime out of the rerun triggers (edited claims must rebuild the verdicts)."""
    return files_digest(paper_files(wc), workflow.basedir)[:16]


def launcher(wc):
    gpus = RUNS[wc.run_id]["resources"].get("gpus", 0)
    if gpus > 1:  # multi-GPU runs go through torchrun (DistributedDataParallel)
        return f"python -m torch.distributed.run --standalone --nproc_per_node={gpus}"
    return "python"


rule all:
    input:
        # every run is a target itself, so a deleted run is retrained even though rerun-triggers
        # leave out mtime (see profiles/default)
        [f"results/{SCALE}/runs/{rid}/metrics.json" for rid in sorted(RUNS)],
        expand("results/{scale}/tables/{paper}.csv", scale=SCALE, paper=PAPERS),
        expand("figures/{scale}/{paper}", scale=SCALE, paper=PAPERS),
        expand("results/{scale}/summary.md", scale=SCALE),
        expand("results/{scale}/readmes.done", scale=SCALE),


rule train:
    """One training run: resolved config -> metrics.json (+ epochs.jsonl)."""
    output:
        metrics="results/{scale}/runs/{run_id}/metrics.json",
        epochs="results/{scale}/runs/{run_id}/epochs.jsonl",
    conda:
        "environment.yml"
    log:
        "results/{scale}/logs/{run_id}.log",
    benchmark:
        "results/{scale}/benchmarks/{run_id}.tsv"
    params:
        cfg=lambda wc: json.dumps(RUNS[wc.run_id], sort_keys=True),
        launcher=launcher,
    threads: THREADS
    resources:
        gpu=run_resources("gpus", 0),
        mem_mb=run_resources("mem_mb", 4000),
        runtime=run_resources("runtime_min", 60),
    shell:
        "OMP_NUM_THREADS={threads} "
        "{params.launcher} -m common.train --config-json {params.cfg:q} "
        "--out results/{wildcards.scale}/runs/{wildcards.run_id} > {log:q} 2>&1"


rule paper_table:
    """Per-paper table (mean, std, n seeds) and the paper's figures vs ours."""
    input:
        runs=lambda wc: expand("results/{scale}/runs/{run_id}/metrics.json", scale=wc.scale,
                               run_id=BY_PAPER[wc.paper]),
        paper=paper_files,
    params:
        digest=paper_digest,
    output:
        csv=report("results/{scale}/tables/{paper}.csv", caption="report/table.rst", category="Tables",
                   subcategory="{paper}"),
        md="results/{scale}/tables/{paper}.md",
        claims="results/{scale}/tables/{paper}_claims.csv",
    conda:
        "environment.yml"
    log:
        "results/{scale}/logs/table_{paper}.log",
    shell:
        "python -m common.aggregate table --paper {wildcards.paper} --scale {wildcards.scale} "
        "--out-csv {output.csv:q} --out-md {output.md:q} --out-claims {output.claims:q} {input.runs:q} > {log:q} 2>&1"


rule paper_figures:
    """Bar charts against the reported value, learning curves and the paper's own plots."""
    input:
        runs=lambda wc: expand("results/{scale}/runs/{run_id}/metrics.json", scale=wc.scale,
                               run_id=BY_PAPER[wc.paper]),
        paper=paper_files,
    params:
        digest=paper_digest,
    output:
        report(directory("figures/{scale}/{paper}"), patterns=["{name}.png"], caption="report/figure.rst",
               category="Figures", subcategory="{paper}"),
    conda:
        "environment.yml"
    log:
        "results/{scale}/logs/figures_{paper}.log",
    shell:
        "python -m common.aggregate figures --paper {wildcards.paper} --scale {wildcards.scale} "
        "--out-dir {output:q} {input.runs:q} > {log:q} 2>&1"


rule summary:
    """Every headline claim across papers with a verdict; cross-method matrix; the papers' cross-paper
    tables (papers/<paper>/tables.py: make_tables, e.g. RankMixup's calibration table)."""
    input:
        claims=expand("results/{{scale}}/tables/{paper}_claims.csv", paper=PAPERS),
        runs=[f"results/{SCALE}/runs/{rid}/metrics.json" for rid in sorted(RUNS)],
    output:
        md=report("results/{scale}/summary.md", caption="report/summary.rst", category="Summary"),
        csv="results/{scale}/summary.csv",
        tex="results/{scale}/summary.tex",
        matrix=report("results/{scale}/matrix.md", caption="report/matrix.rst", category="Summary"),
        matrix_csv="results/{scale}/matrix.csv",
        extra=report(directory("results/{scale}/cross"), patterns=["{name}.md"], caption="report/cross.rst",
                     category="Summary"),
    conda:
        "environment.yml"
    log:
        "results/{scale}/logs/summary.log",
    shell:
        "python -m common.aggregate summary --scale {wildcards.scale} --claims {input.claims:q} "
        "--runs {input.runs:q} --out-md {output.md:q} --out-csv {output.csv:q} --out-tex {output.tex:q} "
        "--out-matrix {output.matrix:q} --out-matrix-csv {output.matrix_csv:q} --out-extra {output.extra:q} "
        "> {log:q} 2>&1"


rule readmes:
    """Write the current tables between the generated markers of README.md and papers/*/README.md."""
    input:
        tables=expand("results/{{scale}}/tables/{paper}.md", paper=PAPERS),
        summary="results/{scale}/summary.md",
    output:
        "results/{scale}/readmes.done",  # the digest of the inputs the aggregates were built from
    params:
        stamp_inputs=lambda wc: aggregate_inputs(wc.scale),
    conda:
        "environment.yml"
    log:
        "results/{scale}/logs/readmes.log",
    shell:
        "python -m common.aggregate readmes --scale {wildcards.scale} {input.tables:q} --stamp {output:q} "
        "--stamp-inputs {params.stamp_inputs:q} > {log:q} 2>&1"


rule bench:
    """Performance benchmarks (`snakemake bench`): method overheads, trainer vs bare loop, data
    path, our mixing ops vs timm / torchvision, CPU option trials. Not part of `all`."""
    output:
        csv="results/bench/bench.csv",
        md="results/bench/README_section.md",
        meta="results/bench/bench_meta.json",
        png=report("results/bench/bench.png", caption="report/bench.rst", category="Performance"),
        pdf="results/bench/bench.pdf",
    log:
        "results/bench/bench.log",
    conda:
        "environment.yml"
    shell:
        "python -m benchmarks.run --out results/bench > {log:q} 2>&1"
