"""Aggregates of the planned scale: per-paper tables and figures, the cross-paper summary, the README
splice, and the input digests by which a fresh clone knows they are current (common.freshness). Every
file a job reads is a declared input (common.workplan names them) and is passed on its command line,
except each run's epochs.jsonl and benchmark file, which the aggregation finds beside the runs."""


rule paper_table:
    """Per-paper table (mean, std, n seeds) and the paper's figures vs ours."""
    input:
        unpack(table_job_inputs),
    output:
        csv=report("results/{scale}/tables/{paper}.csv", caption="../report/table.rst", category="Tables",
                   subcategory="{paper}"),
        md="results/{scale}/tables/{paper}.md",
        claims="results/{scale}/tables/{paper}_claims.csv",
    conda:
        ENV
    log:
        "logs/{scale}/table_{paper}.log",
    shell:
        "python -m common.aggregate table --paper {wildcards.paper} --scale {wildcards.scale} --paper-files {input.paper:q} "
        "--out-csv {output.csv:q} --out-md {output.md:q} --out-claims {output.claims:q} {input.metrics:q} > {log:q} 2>&1"


rule paper_figures:
    """Bar charts against the reported value, learning curves and the paper's own plots (plots.py)."""
    input:
        unpack(table_job_inputs),
    output:
        report(directory("figures/{scale}/{paper}"), patterns=["{name}.png"], caption="../report/figure.rst",
               category="Figures", subcategory="{paper}"),
    conda:
        ENV
    log:
        "logs/{scale}/figures_{paper}.log",
    shell:
        "python -m common.aggregate figures --paper {wildcards.paper} --scale {wildcards.scale} --paper-files {input.paper:q} "
        "--out-dir {output:q} {input.metrics:q} > {log:q} 2>&1"


rule paper_inputs_digest:
    """Record the content digest of the files a paper's table and figures were just built from (its runs'
    metrics.json and its own files): while it matches, they are current (common.freshness)."""
    localrule: True  # seconds of work: never worth a cluster job
    input:
        unpack(paper_record_inputs),
    output:
        "results/{scale}/digests/{paper}.sha256",
    conda:
        ENV
    log:
        "logs/{scale}/digest_{paper}.log",
    shell:
        "python -m common.freshness record {output:q} {input.digest:q} > {log:q} 2>&1"


rule summary:
    """Every headline claim across papers with a verdict; cross-method matrix; the papers' cross-paper
    tables (papers/<paper>/tables.py: make_tables, e.g. RankMixup's calibration table); the forest plot.
    Needs the whole paper set: with papers= it refuses to run (whole_set_only)."""
    input:
        unpack(summary_inputs),
    output:
        md=report("results/{scale}/summary.md", caption="../report/summary.rst", category="Summary"),
        csv="results/{scale}/summary.csv",
        tex="results/{scale}/summary.tex",
        matrix=report("results/{scale}/matrix.md", caption="../report/matrix.rst", category="Summary"),
        matrix_csv="results/{scale}/matrix.csv",
        fmt="results/{scale}/aggregate_format.txt",
        extra=report(directory("results/{scale}/cross"), patterns=["{name}.md"], caption="../report/cross.rst",
                     category="Summary"),
        forest=report("figures/{scale}/summary_forest.png", caption="../report/forest.rst", category="Summary"),
        forest_pdf="figures/{scale}/summary_forest.pdf",
    params:
        units=lambda wc, input: " ".join(f"--machine-units '{f}'" for f in input.units),
    conda:
        ENV
    log:
        "logs/{scale}/summary.log",
    shell:
        "python -m common.aggregate summary --scale {wildcards.scale} --paper-files {input.paper:q} "
        "--claims {input.claims:q} --runs {input.metrics:q} --out-md {output.md:q} --out-csv {output.csv:q} "
        "--out-tex {output.tex:q} --out-matrix {output.matrix:q} --out-matrix-csv {output.matrix_csv:q} "
        "--out-extra {output.extra:q} --out-format {output.fmt:q} --out-forest {output.forest:q} {params.units} "
        "> {log:q} 2>&1"


rule summary_inputs_digest:
    """Record the content digest of every run and every paper's files once the cross-paper aggregates are
    built from them (as paper_inputs_digest does for one paper)."""
    localrule: True  # seconds of work: never worth a cluster job
    input:
        unpack(cross_record_inputs),
    output:
        "results/{scale}/digests/cross-paper.sha256",
    conda:
        ENV
    log:
        "logs/{scale}/digest_summary.log",
    shell:
        "python -m common.freshness record {output:q} {input.digest:q} > {log:q} 2>&1"


rule splice_readmes:
    """The one step that writes tracked files: splice the generated blocks between the `generated:`
    markers of README.md and papers/*/README.md. The READMEs are edited in place, so they are inputs,
    not outputs (Snakemake deletes a job's outputs before running it); the output readmes.done holds the
    digest of every file the cross-paper aggregates were built from. Part of the default target only at a
    committed scale (cpu) and for the whole paper set; elsewhere only on request (`snakemake
    splice_readmes --config scale=quick`), where it writes only its stamp: quick-scale tables are never
    inlined into tracked READMEs."""
    localrule: True  # seconds of work: never worth a cluster job
    input:
        unpack(readme_inputs),
    output:
        f"results/{SCALE}/readmes.done",
    params:
        scale=SCALE,
        bench=lambda wc, input: f"--bench-section {' '.join(input.bench)}" if input.bench else "",
    conda:
        ENV
    log:
        f"logs/{SCALE}/readmes.log",
    shell:
        "python -m common.aggregate readmes --scale {params.scale} {input.tables:q} --summary-md {input.summary:q} "
        "{params.bench} --stamp {output:q} --stamp-inputs {input.digest:q} > {log:q} 2>&1"
