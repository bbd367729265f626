"""Aggregates: per-paper tables and figures, the cross-paper summary, and the README splice."""


rule paper_table:
    """Per-paper table (mean, std, n seeds) and the paper's figures vs ours."""
    input:
        runs=paper_runs,
        paper=paper_files,
    params:
        digest=paper_files_digest,
    output:
        csv=report("results/{scale}/tables/{paper}.csv", caption="../report/table.rst", category="Tables",
                   subcategory="{paper}"),
        md="results/{scale}/tables/{paper}.md",
        claims="results/{scale}/tables/{paper}_claims.csv",
    conda:
        ENV
    log:
        "results/{scale}/logs/table_{paper}.log",
    shell:
        "python -m common.aggregate table --paper {wildcards.paper} --scale {wildcards.scale} "
        "--out-csv {output.csv:q} --out-md {output.md:q} --out-claims {output.claims:q} {input.runs:q} > {log:q} 2>&1"


rule paper_figures:
    """Bar charts against the reported value, learning curves and the paper's own plots."""
    input:
        runs=paper_runs,
        paper=paper_files,
    params:
        digest=paper_files_digest,
    output:
        report(directory("figures/{scale}/{paper}"), patterns=["{name}.png"], caption="../report/figure.rst",
               category="Figures", subcategory="{paper}"),
    conda:
        ENV
    log:
        "results/{scale}/logs/figures_{paper}.log",
    shell:
        "python -m common.aggregate figures --paper {wildcards.paper} --scale {wildcards.scale} "
        "--out-dir {output:q} {input.runs:q} > {log:q} 2>&1"


rule paper_inputs_digest:
    """Record the content digest of the inputs a paper's table and figures were just built from (its
    runs' metrics.json and its own files). In a fresh clone, where git's checkout order makes those
    inputs look newer than the committed outputs, a matching digest marks that paper's committed
    aggregates up to date (adopt_committed_aggregates), one paper at a time."""
    input:
        runs=paper_runs,
        paper=paper_files,
        built=paper_built,
    output:
        "results/{scale}/digests/{paper}.sha256",
    conda:
        ENV
    log:
        "results/{scale}/logs/digest_{paper}.log",
    shell:
        "python workflow/scripts/inputs_digest.py {output:q} {input.runs:q} {input.paper:q} > {log:q} 2>&1"


rule summary:
    """Every headline claim across papers with a verdict; cross-method matrix; the papers' cross-paper
    tables (papers/<paper>/tables.py: make_tables, e.g. RankMixup's calibration table). Needs the
    whole paper set: with papers= it refuses to run (summary_claims)."""
    input:
        claims=summary_claims,
        runs=summary_runs,
    output:
        md=report("results/{scale}/summary.md", caption="../report/summary.rst", category="Summary"),
        csv="results/{scale}/summary.csv",
        tex="results/{scale}/summary.tex",
        matrix=report("results/{scale}/matrix.md", caption="../report/matrix.rst", category="Summary"),
        matrix_csv="results/{scale}/matrix.csv",
        fmt="results/{scale}/aggregate_format.txt",
        extra=report(directory("results/{scale}/cross"), patterns=["{name}.md"], caption="../report/cross.rst",
                     category="Summary"),
        **FOREST,
    params:
        extra=summary_extra_args,
    conda:
        ENV
    log:
        "results/{scale}/logs/summary.log",
    shell:
        "python -m common.aggregate summary --scale {wildcards.scale} --claims {input.claims:q} "
        "--runs {input.runs:q} --out-md {output.md:q} --out-csv {output.csv:q} --out-tex {output.tex:q} "
        "--out-matrix {output.matrix:q} --out-matrix-csv {output.matrix_csv:q} --out-extra {output.extra:q} "
        "--out-format {output.fmt:q} "
        "{params.extra} > {log:q} 2>&1"


rule summary_inputs_digest:
    """Record the content digest of every run and every paper's files once the cross-paper aggregates
    are built from them (the record a fresh clone adopts them by, as for paper_inputs_digest)."""
    input:
        inputs=summary_digest_inputs,
        built=summary_outputs,
    output:
        "results/{scale}/digests/cross-paper.sha256",
    conda:
        ENV
    log:
        "results/{scale}/logs/digest_summary.log",
    shell:
        "python workflow/scripts/inputs_digest.py {output:q} {input.inputs:q} > {log:q} 2>&1"


rule splice_readmes:
    """The one step that writes tracked files: splice the generated blocks (its declared inputs:
    results/<scale>/tables/<paper>.md, summary.md, matrix.md, results/bench/README_section.md) between
    the `generated:` markers of README.md and papers/*/README.md. The READMEs are edited in place, so
    they cannot be declared outputs (Snakemake deletes a job's outputs before running it); the output
    readmes.done holds the digest of every input the cross-paper aggregates were built from. Part of
    the default target only at a committed scale (cpu) and for the whole paper set; at other scales
    only on request (`snakemake splice_readmes --config scale=quick`), where the aggregation writes
    only its stamp: quick-scale tables are never inlined into tracked READMEs."""
    input:
        unpack(readme_blocks),
    output:
        f"results/{SCALE}/readmes.done",
    params:
        scale=SCALE,
        blocks=readme_block_args,
        stamp_inputs=readme_stamp_inputs,
    conda:
        ENV
    log:
        f"results/{SCALE}/logs/readmes.log",
    shell:
        "python -m common.aggregate readmes --scale {params.scale} {input.tables:q} {params.blocks} --stamp {output:q} "
        "--stamp-inputs {params.stamp_inputs:q} > {log:q} 2>&1"
