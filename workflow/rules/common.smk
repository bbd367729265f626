"""The plan of one scale and everything checked before the first job; the helper functions the rules
call. No rules here (the rule files hold no helper functions)."""
import difflib
import importlib
import importlib.util
import json
import os
import shlex
import time
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from common.config import ConfigError, discover_papers, expand_grid, load_experiments, plan
from common.fileio import files_digest

ROOT = Path(workflow.basedir)
ENV = "../../environment.yml"  # conda env of every rule (relative to the rule files)
# results/cpu and figures/cpu are tracked in git; quick and paper outputs are not (.gitignore), so
# only the cpu blocks are spliced into the tracked READMEs by default
COMMITTED_SCALES = ("cpu",)
SCALES = ("quick", "cpu", "paper")
# keys that left the workflow config, with where they went
MOVED_KEYS = {"threads_per_run": "threads per training job are a runtime setting of the profile now: "
                                 "`set-threads: {train: N}` in profiles/default/config.yaml, or --set-threads train=N"}

# `python` in every job is the interpreter that runs Snakemake (whose environment has the packages),
# even when Snakemake was started by path without activating that environment
shell.prefix(f"set -euo pipefail; export PATH={shlex.quote(os.path.dirname(sys.executable))}:\"$PATH\"; ")


def fail(message):
    """Stop before any job with a message and exit status 1 (a user error, not a traceback)."""
    print(f"mixrepro: error: {message}", file=sys.stderr)
    sys.exit(1)


def optional(module, name):
    """`module.name` when that function exists in this tree, else None (checks other parts add)."""
    return getattr(importlib.import_module(module), name, None)


# ------------------------------------------------------------------ workflow config
def check_workflow_config():
    schema = ROOT / "workflow" / "schemas" / "config.schema.json"
    allowed = sorted(json.loads(schema.read_text())["properties"])
    for key in config:
        if key in MOVED_KEYS:
            fail(f"workflow config: '{key}' is no longer a config key; {MOVED_KEYS[key]}")
        if key not in allowed:
            near = difflib.get_close_matches(key, allowed, n=1)
            fail(f"workflow config (config/config.yaml + --config): unknown key '{key}'."
                 f"{f' Did you mean {near[0]!r}?' if near else ''} Allowed keys: {', '.join(allowed)}")
    try:
        validate(config, str(schema))  # also fills in the schema's defaults
    except WorkflowError as e:
        reason = str(e).split("\n\n")[0].replace("Error validating config file.\n", "")
        fail(f"workflow config (config/config.yaml + --config) does not match "
             f"{schema.relative_to(ROOT)}: {reason}")


check_workflow_config()
SCALE = config["scale"]
SUBSET = sorted(set(config["papers"]))
if config.get("data_root"):  # jobs inherit the environment
    os.environ.update(MIXREPRO_DATA=str(config["data_root"]))

KNOWN_PAPERS = discover_papers(ROOT)
for _p in SUBSET:
    if _p not in KNOWN_PAPERS:
        _near = difflib.get_close_matches(_p, list(KNOWN_PAPERS), n=1)
        fail(f"papers: unknown paper '{_p}'.{f' Did you mean {_near[0]!r}?' if _near else ''} "
             f"Paper folders (papers/<name>/experiments.yaml): {', '.join(KNOWN_PAPERS)}")

# ------------------------------------------------------------------ plan + checks before any job
try:
    _validate_all = optional("common.config", "validate_all")  # every paper at every scale
    if _validate_all is not None:
        _validate_all(ROOT)
    ALL_RUNS, ALL_BY_PAPER = plan(SCALE, ROOT)
except ConfigError as e:
    fail(str(e))
RUNS = {rid: cfg for rid, cfg in ALL_RUNS.items()
        if not SUBSET or any(rid in ALL_BY_PAPER[p] for p in SUBSET)}
BY_PAPER = {p: ids for p, ids in ALL_BY_PAPER.items() if ids and (not SUBSET or p in SUBSET)}
PAPERS = sorted(BY_PAPER)


def check_claims():
    """Every paper's claims and reported.csv against its runs at each scale it defines
    (common.aggregate.validate_claims), so a broken claim fails the dry run, not the aggregation."""
    check = optional("common.aggregate", "validate_claims")
    if check is None:
        return
    for paper, path in KNOWN_PAPERS.items():
        try:
            exp = load_experiments(path)
            cfgs = {s: expand_grid(exp, s, str(path)) for s in SCALES if s in exp["scales"]}
            check(paper, exp, cfgs, ROOT / "papers" / paper / "reported.csv")
        except ConfigError as e:
            fail(f"papers/{paper}: {e}")


check_claims()


def aggregate_options(cmd):
    """The options `python -m common.aggregate <cmd>` accepts in this tree (the aggregation CLI only
    ever adds options), so the rules pass and declare what the installed version supports."""
    try:
        parser = importlib.import_module("common.aggregate.cli").parser()
    except (ModuleNotFoundError, AttributeError):
        return set()
    sub = next(a for a in parser._actions if a.dest == "cmd")
    return set(sub.choices[cmd]._option_string_actions)


SUMMARY_OPTIONS = aggregate_options("summary")
README_OPTIONS = aggregate_options("readmes")
# the forest plot of every claim, where the aggregation writes one
FOREST = {"forest": report("figures/{scale}/summary_forest.png", caption="../report/forest.rst", category="Summary"),
          "forest_pdf": "figures/{scale}/summary_forest.pdf"} if "--out-forest" in SUMMARY_OPTIONS else {}


def metrics_path(run_id, scale=None):
    return f"results/{scale or SCALE}/runs/{run_id}/metrics.json"


def find_stale_runs():
    """Runs whose metrics.json was computed by other code than today's (common.codehash.stale_runs:
    neither the current code digest nor the one pinned in results/<scale>/code_pins.json)."""
    if importlib.util.find_spec("common.codehash") is None:
        return set()
    stale_runs = optional("common.codehash", "stale_runs")
    return set(stale_runs(SCALE, ROOT, RUNS)) if stale_runs is not None else set()


STALE = find_stale_runs()


def check_data():
    """At cpu/paper scale: the data files of every run that will train (no metrics.json yet, or stale),
    except datasets the run may download (dataset.download)."""
    if SCALE == "quick":
        return
    missing_files = optional("common.data", "missing_files")
    if missing_files is None:
        return
    to_train = [rid for rid in sorted(RUNS) if rid in STALE or not (ROOT / metrics_path(rid)).exists()]
    missing, short = {}, {}  # missing file -> runs needing it; checked once per distinct dataset block
    for rid in to_train:
        ds = RUNS[rid]["dataset"]
        if ds.get("download"):  # the run may fetch it itself
            continue
        key = json.dumps(ds, sort_keys=True)
        if key not in short:
            short[key] = [str(f) for f in missing_files(ds)]
        for f in short[key]:
            missing.setdefault(f, []).append(rid)
    if missing:
        n_runs = len({r for rids in missing.values() for r in rids})
        missing = sorted(missing)
        shown = "\n  ".join(missing[:20]) + (f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else "")
        fail(f"{n_runs} run(s) to train at scale '{SCALE}' need data files that are missing:\n  {shown}\n"
             f"Point the workflow at the data root: snakemake --config scale={SCALE} data_root=/path/to/data "
             f"(or set MIXREPRO_DATA=/path/to/data).")


check_data()


# ------------------------------------------------------------------ helpers of the rules
def run_config(run_id):
    """The resolved config of a run of this plan; an unknown id is a clear error, not a KeyError."""
    try:
        return RUNS[run_id]
    except KeyError:
        raise WorkflowError(unknown_run_message(run_id)) from None


def unknown_run_message(run_id):
    where = f"scale '{SCALE}'" + (f", papers={SUBSET}" if SUBSET else "")
    msg = f"unknown run id '{run_id}' ({where})."
    if run_id in ALL_RUNS:
        owners = [p for p, ids in ALL_BY_PAPER.items() if run_id in ids]
        msg += f" It is a run of {', '.join(owners)}, which papers= leaves out."
    else:
        near = difflib.get_close_matches(run_id, list(ALL_RUNS), n=3, cutoff=0.8)
        if near:
            msg += f" Did you mean {' or '.join(near)}?"
    return (msg + f" Run ids (<method>-<dataset>-<model>-s<seed>-<hash8>) come from papers/*/experiments.yaml: "
            f"`snakemake -n --config scale={SCALE}` lists every planned run's metrics.json, and "
            f"results/{SCALE}/runs/ holds the ones already trained.")


def run_config_json(wc):
    return json.dumps(run_config(wc.run_id), sort_keys=True)


def train_code(wc):
    """The core code directory, an input of every run. Its timestamp is ignored (ancient) because
    common.codehash, not file times, decides which code a result belongs to; for a stale run it is a
    plain input, and mark_stale_outputs has made that run's outputs older than it, so Snakemake reruns
    the run and everything built from it, with or without .snakemake metadata (fresh clone)."""
    run_config(wc.run_id)
    return "common" if wc.run_id in STALE else ancient("common")


def files_of_paper(paper):
    """The paper's own aggregation inputs: its grid/claims, reported figures and plot/table hooks."""
    names = ("experiments.yaml", "reported.csv", "plots.py", "tables.py")
    return [f"papers/{paper}/{n}" for n in names if (ROOT / "papers" / paper / n).exists()]


def paper_files(wc):
    return files_of_paper(wc.paper)


def paper_runs(wc):
    return [metrics_path(rid, wc.scale) for rid in BY_PAPER[wc.paper]]


def paper_files_digest(wc):
    """Content hash of paper_files: a params change reruns the table even though the default profile
    leaves mtime out of the rerun triggers (edited claims must rebuild the verdicts)."""
    return files_digest(paper_files(wc), ROOT)[:16]


def paper_outputs(scale, paper):
    """The aggregates of one paper: its tables and its figure folder."""
    t = f"results/{scale}/tables/{paper}"
    return [f"{t}.csv", f"{t}.md", f"{t}_claims.csv", f"figures/{scale}/{paper}"]


def paper_digest_file(scale, paper):
    return f"results/{scale}/digests/{paper}.sha256"


def paper_inputs(scale, paper, by_paper=None):
    """What a paper's table and figures are computed from: its runs' metrics.json and its own files."""
    return [metrics_path(r, scale) for r in (by_paper or BY_PAPER)[paper]] + files_of_paper(paper)


def paper_digest_inputs(wc):
    return paper_inputs(wc.scale, wc.paper)


def paper_built(wc):
    return paper_outputs(wc.scale, wc.paper)


def aggregate_inputs(scale):
    """Every file the cross-paper aggregates of `scale` are computed from: every run's metrics.json
    and every paper's own files (always the whole paper set, whatever papers= says)."""
    papers = sorted(p for p, ids in ALL_BY_PAPER.items() if ids)
    return [metrics_path(r, scale) for r in sorted(ALL_RUNS)] + [f for p in papers for f in files_of_paper(p)]


def subset_refusal(what):
    return (f"{what} covers every paper, but papers={SUBSET} plans only a subset: run without papers= "
            f"to update it (a subset never rewrites cross-paper files).")


def summary_claims(wc):
    if SUBSET:
        raise WorkflowError(subset_refusal(f"results/{wc.scale}/summary.*"))
    return [f"results/{wc.scale}/tables/{p}_claims.csv" for p in PAPERS]


def summary_runs(wc):
    return [metrics_path(rid, wc.scale) for rid in sorted(RUNS)]


def summary_outputs(wc):
    forest = [f.format(scale=wc.scale) for f in FOREST.values()]  # the forest plot, where one is written
    return [f"results/{wc.scale}/{n}" for n in ("summary.md", "summary.csv", "summary.tex", "matrix.md",
                                                "matrix.csv", "aggregate_format.txt", "cross")] + forest


def summary_digest_inputs(wc):
    if SUBSET:
        raise WorkflowError(subset_refusal(f"results/{wc.scale}/digests/cross-paper.sha256"))
    return aggregate_inputs(wc.scale)


def readme_blocks(wc):
    """The generated blocks spliced into the READMEs: each paper's table, the summary, the matrix and
    (when present) the benchmark section."""
    if SUBSET:
        raise WorkflowError(subset_refusal("the README blocks"))
    blocks = {"tables": [f"results/{SCALE}/tables/{p}.md" for p in PAPERS],
              "summary": f"results/{SCALE}/summary.md", "matrix": f"results/{SCALE}/matrix.md"}
    sections = [f"results/bench/{n}" for n in ("README_section.md", "loader_README_section.md")]
    if (ROOT / sections[0]).exists():  # built by `snakemake bench` only
        blocks["bench"] = [f for f in sections if (ROOT / f).exists()]
    return blocks


def summary_extra_args(wc, output):
    return f"--out-forest {output.forest}" if FOREST else ""


def readme_block_args(wc, input):
    """Where the blocks are read from, passed explicitly when the aggregation accepts it (older versions
    read results/<scale>/summary.md, matrix.md and results/bench/README_section.md by themselves)."""
    args = [f"--summary-md {input.summary} --matrix-md {input.matrix}"] if "--summary-md" in README_OPTIONS else []
    if "--bench-section" in README_OPTIONS and "bench" in input.keys():
        args.append("--bench-section " + " ".join(input.bench))
    return " ".join(args)


def readme_stamp_inputs(wc):
    return aggregate_inputs(SCALE)


def all_targets():
    """Every run, each paper's table, figures and input digest; for the whole paper set the summary
    (+ its input digest) and, at a committed scale, the README splice. A paper subset writes nothing cross-paper."""
    targets = [metrics_path(rid) for rid in sorted(RUNS)]
    for paper in PAPERS:
        targets += paper_outputs(SCALE, paper)[:1] + paper_outputs(SCALE, paper)[3:]
        targets.append(paper_digest_file(SCALE, paper))
    if SUBSET:
        if workflow.is_main_process:
            print(f"mixrepro: papers={SUBSET} is a subset: the cross-paper aggregates (results/{SCALE}/summary.*, "
                  f"matrix.*, cross/) and the README blocks are left as they are; run without papers= to "
                  f"update them.", file=sys.stderr)
        return targets
    targets += [f"results/{SCALE}/summary.md", f"results/{SCALE}/digests/cross-paper.sha256"]
    if SCALE in COMMITTED_SCALES:
        targets.append(f"results/{SCALE}/readmes.done")
    return targets


# ------------------------------------------------------------------ file times (fresh clones, stale code)
def read_digest(path):
    try:
        return path.read_text().strip()
    except OSError:
        return None


def legacy_adopted(scale):
    """Papers covered by the single digest readmes.done held before per-paper digests existed (every
    paper that then had a table): accepted while that digest still matches their inputs."""
    papers = sorted(p for p, ids in ALL_BY_PAPER.items()
                    if ids and (ROOT / f"results/{scale}/tables/{p}.csv").exists())
    runs = sorted({r for p in papers for r in ALL_BY_PAPER[p]})
    inputs = [metrics_path(r, scale) for r in runs] + [f for p in papers for f in files_of_paper(p)]
    recorded = read_digest(ROOT / f"results/{scale}/readmes.done")
    return set(papers) if papers and recorded == files_digest(inputs, ROOT) else set()


def adopt_committed_aggregates(scale):
    """Mark committed aggregates up to date when they were built from exactly the current inputs.

    git checks files out in path order, so in a fresh clone figures/ is older than papers/ and
    results/<scale>/runs/, and Snakemake, having no metadata of its own yet, would rebuild every
    table and figure from modification times alone. Per paper, results/<scale>/digests/<paper>.sha256
    records the content digest of that paper's inputs (its runs + its files) when its table and
    figures were built; a paper whose inputs still have that digest gets its outputs touched in DAG
    order (what `snakemake --touch` would do for them). The cross-paper aggregates are adopted the same
    way from digests/cross-paper.sha256 (every paper's inputs), and readmes.done when it holds that digest
    too. Anything else is left to Snakemake's usual checks, so a new or edited paper rebuilds only
    its own aggregates and the cross-paper ones."""
    legacy = None
    adopted = []
    for paper in PAPERS:
        recorded = read_digest(ROOT / paper_digest_file(scale, paper))
        if recorded is None:  # digests written before per-paper records existed
            legacy = legacy_adopted(scale) if legacy is None else legacy
            ok = paper in legacy
        else:
            ok = recorded == files_digest(paper_inputs(scale, paper), ROOT)
        if ok:
            adopted.append(paper)
    res = ROOT / "results" / scale
    current = files_digest(aggregate_inputs(scale), ROOT) if not SUBSET else None
    recorded = read_digest(res / "digests" / "cross-paper.sha256") or read_digest(res / "readmes.done")
    cross = current is not None and recorded == current and set(adopted) == set(PAPERS)
    layers = [[ROOT / f for p in adopted for f in paper_outputs(scale, p)],
              [ROOT / paper_digest_file(scale, p) for p in adopted],
              [*sorted(res.glob("summary.*")), *sorted(res.glob("matrix.*")),
               *sorted((ROOT / "figures" / scale).glob("summary_forest.*")),
               res / "aggregate_format.txt", res / "cross"] if cross else [],
              [res / "digests" / "cross-paper.sha256"] if cross else [],
              [res / "readmes.done"] if cross and read_digest(res / "readmes.done") == current else []]
    inputs = {f for p in adopted for f in paper_inputs(scale, p)} | (set(aggregate_inputs(scale)) if cross else set())
    t = max([time.time_ns()] + [(ROOT / f).stat().st_mtime_ns + 1_000_000 for f in inputs if (ROOT / f).exists()])
    for i, layer in enumerate(layers):  # each layer strictly newer than the one it is built from
        for path in layer:
            for f in [*sorted(path.rglob("*")), path] if path.is_dir() else [path] if path.exists() else []:
                os.utime(f, ns=(t + i * 1_000_000, t + i * 1_000_000))


def mark_stale_outputs():
    """Make the outputs of stale runs older than the `common` directory (their plain input, see
    train_code), so that Snakemake reruns them. Forcing from the Snakefile is not possible: Snakemake
    reads --forcerun from DAG settings it attaches to the workflow only after the Snakefile is parsed."""
    if not STALE:
        return
    t = (ROOT / "common").stat().st_mtime_ns - 1_000_000_000
    for rid in sorted(STALE):
        for name in ("metrics.json", "epochs.jsonl"):
            f = ROOT / "results" / SCALE / "runs" / rid / name
            if f.exists() and f.stat().st_mtime_ns > t:
                os.utime(f, ns=(t, t))
    print(f"mixrepro: {len(STALE)} run(s) were computed by other code than today's and will be rerun "
          f"(common.codehash): {', '.join(sorted(STALE)[:10])}{' ...' if len(STALE) > 10 else ''}", file=sys.stderr)


if workflow.is_main_process:  # not again inside each spawned cluster job
    adopt_committed_aggregates(SCALE)
    mark_stale_outputs()
