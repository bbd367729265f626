"""Performance benchmarks (`snakemake bench`); not part of the default target."""


rule bench:
    """Method overheads, trainer vs bare loop, data path, our mixing ops vs timm / torchvision, CPU
    option trials, as ratios measured in one process."""
    output:
        csv="results/bench/bench.csv",
        md="results/bench/README_section.md",
        meta="results/bench/bench_meta.json",
        png=report("results/bench/bench.png", caption="../report/bench.rst", category="Performance"),
        pdf="results/bench/bench.pdf",
    log:
        "logs/bench/bench.log",
    conda:
        ENV
    shell:
        "python -m benchmarks.run --out results/bench > {log:q} 2>&1"
