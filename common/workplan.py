"""The workflow's plan of one scale, made once while the Snakefile is read (workflow/rules/common.smk).

Every paper folder's grid is expanded at every scale it defines and checked together with its claims
and reported.csv, so a typo in a scale that is not being run fails the dry run too; the runs of the
requested scale (and paper subset) are collected from the same expansion. The plan also names the
files each aggregate job reads, so the rules declare all of them. Nothing here writes a file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .aggregate.validate import validate_claims
from .config import COMMITTED_SCALES, SCALES, ConfigError, discover_papers, expand_grid, load_experiments, run_id
from .registry import did_you_mean

#: a paper's own files its aggregates are computed from, where present: grid and claims, reported
#: figures, figure hook, cross-paper table hook
PAPER_FILES = ("experiments.yaml", "reported.csv", "plots.py", "tables.py")
#: the summary job's outputs in results/<scale>/ (its forest plot goes to figures/<scale>/)
CROSS_OUTPUTS = {"md": "summary.md", "csv": "summary.csv", "tex": "summary.tex", "matrix": "matrix.md",
                 "matrix_csv": "matrix.csv", "fmt": "aggregate_format.txt", "extra": "cross"}


# ---------------------------------------------------------------- records (common.freshness)
def paper_record(scale: str, paper: str) -> str:
    return f"results/{scale}/digests/{paper}.sha256"


def cross_record(scale: str) -> str:
    return f"results/{scale}/digests/cross-paper.sha256"


def readmes_record(scale: str) -> str:
    return f"results/{scale}/readmes.done"


def retrained_stamp(tree: str, run: str) -> str:
    """The temporary output of a train job the default target asks for when the run is stale."""
    return f"results/{tree}/tmp/retrained/{run}"


@dataclass(frozen=True)
class Plan:
    root: Path
    scale: str
    subset: tuple[str, ...]  # the papers asked for (papers=[...]); empty: every paper
    experiments: dict[str, Path]  # every paper folder -> its experiments.yaml
    all_runs: dict[str, dict]  # run id -> resolved config, whole paper set
    all_by_paper: dict[str, list[str]]  # paper -> its run ids at the scale, whole paper set
    runs: dict[str, dict]  # the runs of the subset
    by_paper: dict[str, list[str]]  # the subset's papers that have runs at the scale

    @classmethod
    def build(cls, root, scale: str, subset=()) -> Plan:
        """Expand and check every paper at every scale once; raise ConfigError naming the file."""
        root = Path(root)
        experiments = discover_papers(root)
        for name in subset:
            if name not in experiments:
                raise ConfigError(f"papers: unknown paper {name!r}.{did_you_mean(name, experiments)} Paper "
                                  f"folders (papers/<name>/experiments.yaml): {', '.join(experiments)}")
        all_runs: dict[str, dict] = {}
        all_by_paper: dict[str, list[str]] = {}
        for paper, path in experiments.items():
            exp = load_experiments(path)
            cfgs = {s: expand_grid(exp, s, str(path)) for s in SCALES if s in exp["scales"]}
            try:
                validate_claims(paper, exp, cfgs, path.parent / "reported.csv")
            except ConfigError as e:
                raise ConfigError(f"papers/{paper}: {e}") from None
            ids = all_by_paper[paper] = []
            for cfg in cfgs.get(scale, []):
                rid = run_id(cfg)
                all_runs.setdefault(rid, cfg)
                if rid not in ids:
                    ids.append(rid)
        subset = tuple(sorted(set(subset)))
        by_paper = {p: ids for p, ids in all_by_paper.items() if ids and (not subset or p in subset)}
        runs = {rid: cfg for rid, cfg in all_runs.items() if any(rid in ids for ids in by_paper.values())}
        return cls(root, scale, subset, experiments, all_runs, all_by_paper, runs, by_paper)

    # ---------------------------------------------------------------- paths
    @property
    def papers(self) -> list[str]:
        return sorted(self.by_paper)

    def run_file(self, run: str, name: str) -> str:
        """``metrics.json`` / ``epochs.jsonl`` of a run of this scale."""
        return f"results/{self.scale}/runs/{run}/{name}"

    def benchmark(self, run: str) -> str:
        """Snakemake's benchmark file of the run's training job (the matrix's whole-job CPU time)."""
        return f"results/{self.scale}/benchmarks/{run}.tsv"

    def paper_files(self, paper: str, names=PAPER_FILES) -> list[str]:
        return [f"papers/{paper}/{n}" for n in names if (self.root / "papers" / paper / n).exists()]

    def paper_inputs(self, paper: str) -> list[str]:
        """The files a paper's table and figures are computed from, as its input digest counts them: its
        runs' metrics.json (each standing for the files its job wrote) and its own files."""
        return [self.run_file(r, "metrics.json") for r in self.by_paper[paper]] + self.paper_files(paper)

    def cross_inputs(self) -> list[str]:
        """The same for the cross-paper aggregates: every run and every paper of the whole paper set."""
        papers = sorted(p for p, ids in self.all_by_paper.items() if ids)
        return ([self.run_file(r, "metrics.json") for r in sorted(self.all_runs)]
                + [f for p in papers for f in self.paper_files(p)] + self.machine_units())

    def machine_units(self) -> list[str]:
        """The factors putting the scale's run times in one machine's units, where measured (benchmarks.rebench)."""
        f = f"results/bench/machine_units_{self.scale}.csv"
        return [f] if (self.root / f).exists() else []

    # ---------------------------------------------------------------- what each aggregate job reads
    def run_inputs(self, runs) -> dict[str, list[str]]:
        """What an aggregate reads of ``runs``: metrics.json and epochs.jsonl (learning curves, statistics)."""
        return {"metrics": [self.run_file(r, "metrics.json") for r in runs],
                "epochs": [self.run_file(r, "epochs.jsonl") for r in runs]}

    def table_job_inputs(self, paper: str) -> dict[str, list[str]]:
        """A paper's table and figures: its runs and its experiments.yaml, reported.csv and plots.py."""
        files = self.paper_files(paper, ("experiments.yaml", "reported.csv", "plots.py"))
        return {**self.run_inputs(self.by_paper[paper]), "paper": files}

    def built(self, paper: str | None = None) -> list[str]:
        """A paper's tables and figure folder; without ``paper`` the cross-paper aggregates."""
        if paper is not None:
            t = f"results/{self.scale}/tables/{paper}"
            return [f"{t}.csv", f"{t}.md", f"{t}_claims.csv", f"figures/{self.scale}/{paper}"]
        return ([f"results/{self.scale}/{n}" for n in CROSS_OUTPUTS.values()]
                + [f"figures/{self.scale}/summary_forest.{e}" for e in ("png", "pdf")])

    def record_job_inputs(self, paper: str | None = None) -> dict[str, list[str]]:
        """The files an input digest counts (``paper_inputs`` / ``cross_inputs``), read once what is
        built from them is built."""
        return {"digest": self.paper_inputs(paper) if paper else self.cross_inputs(), "built": self.built(paper)}

    def summary_job_inputs(self) -> dict[str, list[str]]:
        """Every paper's claims table; every run and its benchmark file (the matrix's whole-job CPU time); the
        machine-units factors; every paper's experiments.yaml (time references, papers left out) and tables.py
        (cross-paper tables)."""
        runs = sorted(self.runs)
        return {"claims": [f"results/{self.scale}/tables/{p}_claims.csv" for p in self.papers],
                **self.run_inputs(runs), "benchmarks": [self.benchmark(r) for r in runs],
                "units": self.machine_units(),
                "paper": [f for p in self.experiments for f in self.paper_files(p, ("experiments.yaml", "tables.py"))]}

    def readme_job_inputs(self) -> dict[str, list[str]]:
        """The blocks spliced into the READMEs (each paper's table, the summary, the benchmark sections once
        ``snakemake bench`` wrote them), the READMEs themselves and the files readmes.done digests."""
        bench = [f"results/bench/{n}" for n in ("README_section.md", "loader_README_section.md")]
        readmes = ["README.md", *(f"papers/{p}/README.md" for p in self.papers)]
        return {"tables": [f"results/{self.scale}/tables/{p}.md" for p in self.papers],
                "summary": [f"results/{self.scale}/summary.md"], "summary_csv": [f"results/{self.scale}/summary.csv"],
                "bench": [f for f in bench if (self.root / f).exists()],
                "readmes": [f for f in readmes if (self.root / f).exists()], "digest": self.cross_inputs()}

    def targets(self, stale) -> list[str]:
        """The default target: every run (for a ``stale`` run also its ``retrained`` stamp, see
        common.freshness), each paper's tables, figures and input digest; for the whole paper set the
        cross-paper aggregates and their digest and, at a committed scale, the README splice."""
        targets = [self.run_file(r, "metrics.json") for r in sorted(self.runs)]
        targets += [retrained_stamp(self.scale, r) for r in sorted(stale)]
        for p in self.papers:
            targets += [*self.built(p), paper_record(self.scale, p)]
        if not self.subset:
            targets += [*self.built(), cross_record(self.scale)]
            targets += [readmes_record(self.scale)] if self.scale in COMMITTED_SCALES else []
        return targets

    # ---------------------------------------------------------------- messages
    def unknown_run_message(self, run: str) -> str:
        where = f"scale '{self.scale}'" + (f", papers={list(self.subset)}" if self.subset else "")
        msg = f"unknown run id '{run}' ({where})."
        owners = [p for p, ids in self.all_by_paper.items() if run in ids]
        if owners:
            msg += f" It is a run of {', '.join(owners)}, which papers= leaves out."
        else:
            msg += did_you_mean(run, self.all_runs)
        return (msg + " Run ids (<method>-<dataset>-<model>-s<seed>-<hash8>) come from papers/*/experiments.yaml: "
                f"`snakemake -n --config scale={self.scale}` lists every planned run's metrics.json, and "
                f"results/{self.scale}/runs/ holds the ones already trained.")

    def missing_data(self, stale) -> str | None:
        """At cpu/paper scale: what to do about the data files missing for the runs that will train (no
        metrics.json yet, or ``stale``), except datasets a run may download itself; None if none is."""
        if self.scale == "quick":
            return None
        from .data import missing_files

        missing: dict[str, list[str]] = {}  # missing file -> runs needing it
        per_dataset: dict[str, list[str]] = {}  # checked once per distinct dataset block
        for rid in sorted(self.runs):
            ds = self.runs[rid]["dataset"]
            if ds.get("download") or (rid not in stale and (self.root / self.run_file(rid, "metrics.json")).exists()):
                continue
            key = json.dumps(ds, sort_keys=True)
            if key not in per_dataset:
                per_dataset[key] = missing_files(ds)
            for f in per_dataset[key]:
                missing.setdefault(f, []).append(rid)
        if not missing:
            return None
        n_runs = len({r for rids in missing.values() for r in rids})
        files = sorted(missing)
        shown = "\n  ".join(files[:20]) + (f"\n  ... and {len(files) - 20} more" if len(files) > 20 else "")
        return (f"{n_runs} run(s) to train at scale '{self.scale}' need data files that are missing:\n  {shown}\n"
                f"Point the workflow at the data root: snakemake --config scale={self.scale} data_root=/path/to/data "
                f"(or set MIXREPRO_DATA=/path/to/data).")
