"""The Snakemake workflow end to end, on throw-away copies of the repository.

Two tiny paper folders (2 runs x 2 epochs on digits) are trained through a default `snakemake`;
then we check what each later invocation schedules (nothing; one deleted run; an edited paper; a
stale-code run; a subset; a new paper), that the tree stays clean and that the report has every
caption. A fresh `git clone` of this repository checks the same at cpu scale with committed results.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

TINY = """\
paper: {name}
title: "Tiny test paper"
scales:
  quick:
    defaults:
      dataset: {{name: digits, val_size: 100}}
      model: {{name: mlp, hidden: [32]}}
      train: {{epochs: 2, batch_size: 128, lr: 0.05}}
      eval: {{occlusion: null}}
    grid:
      - vary: {{method: [{methods}], seed: [0]}}
claims:
  - id: {name}_claim
    text: "{name}: method beats erm"
    metric: top1
    method: {method}
    baseline: erm
"""

NEW_METHOD = '''\
"""A test-only method: mixup with lambda fixed at 0.9 (no edit to common/ needed)."""
from common.methods import Method, MixInfo, StepOutput, register_method
from common.mixing import mix_inputs, pair_indices


@register_method("fixmix_test")
class FixMix(Method):
    def step(self, model, batch, state):
        perm = pair_indices(batch.x.shape[0], state.generator)
        out = model(mix_inputs(batch.x, perm, 0.9))
        y_b = batch.y[perm]
        return StepOutput(self.mixed_loss(out, batch.y, y_b, 0.9), out, MixInfo(batch.y, y_b, 0.9, perm))
'''


def _copy_repo(dst: Path) -> Path:
    """The workflow and the core, plus papers/mixup as a plugin package only (no experiments.yaml), so
    the only papers are the tiny ones the tests add."""
    for name in ("Snakefile", "workflow", "common", "config", "profiles", "environment.yml", "README.md", ".gitignore"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy(src, dst / name)
    (dst / "papers").mkdir()
    shutil.copy(ROOT / "papers" / "__init__.py", dst / "papers" / "__init__.py")
    shutil.copytree(ROOT / "papers" / "mixup", dst / "papers" / "mixup",
                    ignore=shutil.ignore_patterns("__pycache__", "experiments.yaml", "reported.csv"))
    return dst


CROSS_TABLE = '''\
from pathlib import Path


def make_tables(paths, out_dir):
    Path(out_dir, "n_runs.txt").write_text(str(len(paths)))
    Path(out_dir, "n_runs.md").write_text(str(len(paths)) + " runs")  # shown in the report
'''


def _add_paper(repo: Path, name: str, methods: str, method: str, code: str | None = None) -> None:
    d = repo / "papers" / name
    d.mkdir()
    (d / "__init__.py").write_text("from . import method  # noqa: F401\n" if code else "")
    if code:
        (d / "method.py").write_text(code)
    (d / "experiments.yaml").write_text(TINY.format(name=name, methods=methods, method=method))
    (d / "README.md").write_text(f"# {name}\n\n<!-- BEGIN generated:quick -->\n<!-- END generated:quick -->\n")


def _smk(repo: Path, *args: str, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(repo),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    p = subprocess.run(SNAKEMAKE + list(args), cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def _jobs(dry_run_output: str) -> dict[str, int]:
    """Job counts from the 'Job stats' table of a dry run."""
    counts = {}
    m = re.search(r"Job stats:\n(.*?)\n\n", dry_run_output, re.S)
    if not m:
        return counts
    for line in m.group(1).splitlines()[2:]:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout


def _scramble_checkout_times(repo: Path, *newer: str) -> None:
    """What git's path-order checkout does in a fresh clone: the files under `newer` (inputs) look newer
    than the aggregates built from them. Times stay in the past, as after a real checkout."""
    now = time.time()
    for f in repo.rglob("*"):
        if ".git" not in f.parts:
            os.utime(f, (now - 3600, now - 3600))
    for d in newer:
        for f in (repo / d).rglob("*"):
            os.utime(f, (now - 1800, now - 1800))


def _planned(out: str, rule: str) -> list[str]:
    """Output paths of the jobs of `rule` in a dry run's listing."""
    return re.findall(rf"rule {rule}:\n(?:    .*\n)*?    output: ([^\n]+)", out)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A git repository with two tiny papers (tinyb shares tinya's erm run), trained at quick scale by a
    default `snakemake` (no papers= subset)."""
    r = _copy_repo(tmp_path_factory.mktemp("wf"))
    _add_paper(r, "tinya", "erm, {name: mixup, alpha: 0.4}", "mixup")
    (r / "papers/tinya/tables.py").write_text(CROSS_TABLE)
    _add_paper(r, "tinyb", "erm", "erm")
    _git(r, "init", "-q")
    _git(r, "add", "-A")
    _git(r, "commit", "-q", "-m", "tiny")
    _smk(r, "--cores", "2")
    return r


@pytest.mark.slow
def test_quick_run_produces_tables_figures_and_provenance(repo):
    runs = sorted((repo / "results/quick/runs").glob("*/metrics.json"))
    assert len(runs) == 2  # tinyb's erm run is tinya's, trained once
    m = json.loads(runs[0].read_text())
    prov = m["provenance"]
    for key in ("config", "seed", "git_commit", "versions", "wall_time_sec", "threads", "device"):
        assert key in prov
    assert "torch" in prov["versions"]
    table = (repo / "results/quick/tables/tinya.csv").read_text()
    assert "paper,method,dataset,model,setting,metric,mean,std,n_seeds" in table.splitlines()[0]
    assert list((repo / "figures/quick/tinya").glob("*.png"))
    assert (repo / "results/quick/summary.md").exists() and (repo / "results/quick/summary.tex").exists()
    assert "| `erm` |" in (repo / "results/quick/tables/tinya.md").read_text()  # the block, in results/
    # a paper's tables.py hook gets every run of the scale (cross-paper tables)
    assert (repo / "results/quick/cross/n_runs.txt").read_text() == "2"
    for paper in ("tinya", "tinyb"):  # what a fresh clone adopts these aggregates by
        assert re.fullmatch(r"[0-9a-f]{64}\n", (repo / f"results/quick/digests/{paper}.sha256").read_text())


@pytest.mark.slow
def test_a_default_quick_run_leaves_the_git_tree_clean(repo):
    """Quick-scale blocks never go into tracked files: a user's first `snakemake` dirties nothing."""
    assert _git(repo, "status", "--porcelain") == ""
    assert "<!-- BEGIN generated:quick -->\n<!-- END generated:quick -->" in (repo / "papers/tinya/README.md").read_text()


@pytest.mark.slow
def test_the_readme_splice_is_a_named_step_run_on_request(repo):
    """At a scale that is not committed the splice runs only when asked for, and even then quick-scale
    tables are never inlined into tracked READMEs: it writes its stamp and leaves the tree clean."""
    readme = repo / "papers/tinya/README.md"
    before = readme.read_text()
    try:
        _smk(repo, "splice_readmes", "--cores", "1")
        assert (repo / "results/quick/readmes.done").exists()
        assert readme.read_text() == before and "| `erm` |" not in before
        assert _git(repo, "status", "--porcelain") == ""
    finally:
        _git(repo, "checkout", "--", ".")
        (repo / "results/quick/readmes.done").unlink(missing_ok=True)


@pytest.mark.slow
def test_nothing_to_do_then_only_deleted_run_reruns(repo):
    p = _smk(repo, "-n")
    assert "Nothing to be done" in p.stdout + p.stderr
    victim = sorted((repo / "results/quick/runs").glob("mixup*/metrics.json"))[0]
    victim.unlink()
    jobs = _jobs(_smk(repo, "-n").stdout)
    assert jobs.get("train") == 1, jobs
    # only tinya uses the mixup run: tinyb's aggregates are untouched
    assert jobs.get("paper_table") == 1 and jobs.get("paper_figures") == 1, jobs
    assert set(jobs) <= {"train", "paper_table", "paper_figures", "paper_inputs_digest", "summary",
                         "summary_inputs_digest", "all"}, jobs
    untouched = sorted((repo / "results/quick/runs").glob("*/metrics.json"))
    before = {p: p.stat().st_mtime_ns for p in untouched}
    _smk(repo, "--cores", "2")
    assert victim.exists()
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # the other run was not retrained


@pytest.mark.slow
def test_editing_a_papers_claims_rebuilds_its_aggregates_not_its_runs(repo):
    """The tables follow an edited experiments.yaml / reported.csv (their content hash is a param)."""
    exp = repo / "papers/tinya/experiments.yaml"
    text = exp.read_text()
    try:
        exp.write_text(text.replace("method beats erm", "method beats erm (reworded)"))
        jobs = _jobs(_smk(repo, "-n").stdout)
        assert "train" not in jobs and jobs.get("paper_table") == 1 and jobs.get("paper_figures") == 1, jobs
        assert jobs.get("summary") == 1, jobs
    finally:
        exp.write_text(text)
    p = _smk(repo, "-n")
    assert "Nothing to be done" in p.stdout + p.stderr


@pytest.mark.slow
def test_a_paper_subset_writes_nothing_cross_paper(repo):
    """`papers=[...]` builds that paper's runs, table and figures only: the summary, matrix, cross-paper
    tables and READMEs, which cover every paper, are neither scheduled nor writable from a subset."""
    exp = repo / "papers/tinya/experiments.yaml"
    text = exp.read_text()
    summary = repo / "results/quick/summary.md"
    before = summary.read_bytes()
    try:
        exp.write_text(text.replace("method beats erm", "method beats erm (subset)"))
        p = _smk(repo, "--config", "papers=[tinya]", "-n")
        jobs = _jobs(p.stdout)
        assert jobs.get("paper_table") == 1 and "summary" not in jobs and "splice_readmes" not in jobs, jobs
        assert "is a subset" in p.stderr and "run without papers=" in p.stderr
        p = _smk(repo, "results/quick/summary.md", "--config", "papers=[tinya]", "--cores", "1", check=False)
        assert p.returncode != 0 and "run without papers=" in p.stdout + p.stderr, p.stderr[-2000:]
        assert summary.read_bytes() == before
    finally:
        exp.write_text(text)


@pytest.mark.slow
def test_a_fresh_clone_adopts_committed_aggregates_per_paper(repo, tmp_path):
    """In a fresh clone (no .snakemake metadata) git's path-order checkout makes papers/ and
    results/<scale>/runs/ newer than figures/ and the tables; each paper's committed aggregates still
    count as up to date while its recorded input digest matches, independently of the other papers."""
    clone = tmp_path / "clone"
    shutil.copytree(repo, clone, ignore=shutil.ignore_patterns(".snakemake", "__pycache__"))
    _scramble_checkout_times(clone, "papers", "results/quick/runs")
    p = _smk(clone, "-n")
    assert "Nothing to be done" in p.stdout + p.stderr, p.stdout[-2000:]
    # an edited paper is not adopted: its aggregates and the cross-paper ones rerun, not its runs,
    # and not the other paper's table and figures
    exp = clone / "papers/tinya/experiments.yaml"
    exp.write_text(exp.read_text().replace("method beats erm", "method beats erm (edited)"))
    _scramble_checkout_times(clone, "papers")
    out = _smk(clone, "-n").stdout
    jobs = _jobs(out)
    assert "train" not in jobs and jobs.get("paper_table") == 1 and jobs.get("paper_figures") == 1, jobs
    assert jobs.get("summary") == 1, jobs
    assert _planned(out, "paper_table") == ["results/quick/tables/tinya.csv, results/quick/tables/tinya.md, "
                                            "results/quick/tables/tinya_claims.csv"], out[-3000:]
    assert _planned(out, "paper_figures") == ["figures/quick/tinya"], out[-3000:]


@pytest.mark.slow
def test_stale_code_reruns_exactly_the_stale_run_and_its_dependents(repo, tmp_path):
    """A run whose metrics.json was computed by other code (common.codehash.stale_runs) is rerun with
    everything built from it, in a fresh copy without Snakemake metadata; the other run is not."""
    clone = tmp_path / "stale"
    shutil.copytree(repo, clone, ignore=shutil.ignore_patterns(".snakemake", "__pycache__"))
    if importlib.util.find_spec("common.codehash") is None or not hasattr(
            importlib.import_module("common.codehash"), "stale_runs"):
        (clone / "common/codehash.py").write_text(STUB_CODEHASH)  # the contract, until it exists here
    victim = sorted((clone / "results/quick/runs").glob("mixup*/metrics.json"))[0]
    m = json.loads(victim.read_text())
    m["provenance"]["code_digest"] = "0" * 16  # computed by some other code
    victim.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    _scramble_checkout_times(clone, "results/quick/runs")
    for attempt in ("fresh clone", "again"):  # the dry run marks nothing away: still scheduled
        p = _smk(clone, "-n")
        jobs = _jobs(p.stdout)
        assert jobs.get("train") == 1 and victim.parent.name in p.stdout, (attempt, jobs)
        assert jobs.get("paper_table") == 1 and jobs.get("summary") == 1, (attempt, jobs)
        assert "computed by other code" in p.stderr
    other = [f for f in (clone / "results/quick/runs").glob("*/metrics.json") if f != victim][0]
    t = other.stat().st_mtime_ns
    _smk(clone, "--cores", "2")
    assert json.loads(victim.read_text())["provenance"].get("code_digest") != "0" * 16
    assert other.stat().st_mtime_ns == t
    p = _smk(clone, "-n")
    assert "Nothing to be done" in p.stdout + p.stderr, p.stdout[-2000:]


STUB_CODEHASH = '''\
"""Test stub of the code-provenance contract: a run is stale when its metrics.json records a code
digest other than CURRENT (runs recording none predate code digests and are accepted)."""
import json
from pathlib import Path

CURRENT = "1" * 16


def stale_runs(scale, root, runs):
    out = []
    for rid in runs:
        f = Path(root, "results", scale, "runs", rid, "metrics.json")
        if f.exists() and json.loads(f.read_text())["provenance"].get("code_digest", CURRENT) != CURRENT:
            out.append(rid)
    return out
'''


@pytest.mark.slow
def test_report_contains_every_caption(repo, tmp_path):
    """The report shows every table and figure with its caption (workflow/report/*.rst)."""
    out = tmp_path / "report.html"
    _smk(repo, "--report", str(out))
    html = out.read_text(errors="ignore")
    for rst in sorted((ROOT / "workflow/report").glob("*.rst")):
        if rst.stem == "bench":  # `snakemake bench` is not part of the default target
            continue
        if rst.stem == "forest" and not (repo / "figures/quick/summary_forest.png").exists():
            continue  # declared only where the aggregation writes a forest plot
        words = " ".join(re.split(r"``|\.|\{\{", rst.read_text())[0].split()[:5])  # before any markup
        assert words in html, f"caption of {rst.name} ({words!r}) missing from the report"


@pytest.mark.slow
def test_adding_a_method_folder_schedules_only_its_jobs(repo):
    _add_paper(repo, "tinyc", "erm, fixmix_test", "fixmix_test", code=NEW_METHOD)
    p = _smk(repo, "-n")
    out = p.stdout + p.stderr
    jobs = _jobs(out)
    # erm in tinyc is byte-identical to tinya's erm run -> shared, not retrained
    assert jobs.get("train") == 1, jobs
    assert "fixmix_test-digits" in out
    assert jobs.get("paper_table") == 1 and jobs.get("paper_figures") == 1  # only tinyc's aggregates
    assert jobs.get("summary") == 1  # and the cross-paper ones


# ------------------------------------------------------------------ the real repository
@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A fresh `git clone` of this repository (committed cpu results, no .snakemake), with this
    tree's workflow files on top so that uncommitted workflow changes are what is tested."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    dst = tmp_path_factory.mktemp("clone") / "repo"
    branch = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    subprocess.run(["git", "clone", "-q", "--branch", branch, str(ROOT), str(dst)], check=True)
    for name in ("Snakefile", "workflow", "profiles", "config"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, dst / name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, dst / name)
    if (dst / "common/codehash.py").exists() and not (dst / "results/cpu/code_pins.json").exists():
        # the committed cpu runs predate code digests: accept them, as results/cpu/code_pins.json will
        subprocess.run([sys.executable, "-m", "common.codehash", "pin", "--scale", "cpu"], cwd=dst, check=True,
                       env={**os.environ, "PYTHONPATH": str(dst)}, capture_output=True)
    return dst


def _smk_clone(clone: Path, *args: str, data="/nonexistent-data-root", check=True):
    env = {**os.environ, "MIXREPRO_DATA": data, "PYTHONPATH": str(clone)}
    p = subprocess.run(SNAKEMAKE + list(args), cwd=clone, capture_output=True, text=True, timeout=600, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


CPU_PAPER = """\
paper: newpaper
title: "A new paper"
scales:
  cpu:
    defaults:
      dataset: {name: digits, val_size: 100}
      model: {name: mlp, hidden: [16]}
      train: {epochs: 1, batch_size: 128, lr: 0.05}
      eval: {occlusion: null}
    grid:
      - vary: {method: [erm, {name: mixup, alpha: 0.3}], seed: [0]}
claims:
  - id: newpaper_claim
    text: "mixup beats erm"
    metric: top1
    method: mixup
    baseline: erm
"""


def test_fresh_clone_with_a_new_paper_at_cpu_schedules_only_its_jobs(clone, tmp_path):
    """Adoption is per paper: a new paper folder in a fresh clone plans its own runs, table and
    figures and the cross-paper aggregates, never the committed papers' tables and figures."""
    new = clone / "papers/newpaper"
    try:
        new.mkdir()
        (new / "__init__.py").write_text("")
        (new / "experiments.yaml").write_text(CPU_PAPER)
        p = _smk_clone(clone, "-n", "--config", "scale=cpu")
        out = p.stdout
        jobs = _jobs(out)
        assert jobs.get("train") == 2, jobs
        assert all("newpaper" in o or "/erm-" in o or "/mixup-" in o for o in _planned(out, "train")), out[-3000:]
        assert _planned(out, "paper_table") == ["results/cpu/tables/newpaper.csv, results/cpu/tables/newpaper.md, "
                                                "results/cpu/tables/newpaper_claims.csv"], out[-3000:]
        assert _planned(out, "paper_figures") == ["figures/cpu/newpaper"], out[-3000:]
        assert jobs.get("summary") == 1 and jobs.get("splice_readmes") == 1, jobs
    finally:
        shutil.rmtree(new, ignore_errors=True)


def test_fresh_clone_cpu_dry_run_trains_nothing_and_needs_no_data(clone):
    out = _smk_clone(clone, "-n", "--config", "scale=cpu").stdout
    jobs = _jobs(out)
    assert not set(jobs) & {"train", "paper_table", "paper_figures", "summary", "splice_readmes"}, jobs


def test_cpu_paper_subset_leaves_cross_paper_files_alone(clone):
    """The README's `--config scale=cpu papers='[cutmix]'` never rewrites the cross-paper aggregates."""
    p = _smk_clone(clone, "-n", "--config", "scale=cpu", "papers=[cutmix]")
    jobs = _jobs(p.stdout)
    assert not set(jobs) & {"summary", "splice_readmes"}, jobs
    assert "papers=['cutmix'] is a subset" in p.stderr


def test_quick_default_run_plans_no_readme_splice(clone):
    out = _smk_clone(clone, "-n").stdout
    jobs = _jobs(out)
    assert jobs.get("summary") == 1 and "splice_readmes" not in jobs, jobs


def test_lint_is_clean():
    p = subprocess.run(SNAKEMAKE + ["--lint"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Congratulations" in p.stdout + p.stderr


def test_paper_scale_dry_run_without_data_names_the_missing_files():
    import common.data

    if not hasattr(common.data, "missing_files"):
        pytest.skip("common.data.missing_files is not in this tree yet")
    p = subprocess.run(SNAKEMAKE + ["-n", "--config", "scale=paper"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "MIXREPRO_DATA": "/nonexistent-data-root"})
    assert p.returncode != 0
    assert "/nonexistent-data-root" in p.stderr and "data_root=" in p.stderr and "Traceback" not in p.stderr


def _plan_error(*args: str) -> str:
    p = subprocess.run(SNAKEMAKE + ["-n", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0, p.stdout[-2000:]
    return p.stdout + p.stderr


def test_bad_workflow_config_is_rejected_with_suggestion():
    out = _plan_error("--config", "scael=cpu")
    assert "unknown key 'scael'" in out and "Did you mean 'scale'" in out


def test_unknown_scale_is_rejected():
    out = _plan_error("--config", "scale=huge")
    assert "'huge' is not one of" in out and "Traceback" not in out


def test_unknown_paper_is_rejected_with_suggestion():
    out = _plan_error("--config", "papers=[cutmx]")
    assert "unknown paper 'cutmx'" in out and "Did you mean 'cutmix'" in out and "Traceback" not in out


def test_threads_per_run_points_to_the_profile():
    out = _plan_error("--config", "threads_per_run=2")
    assert "set-threads" in out


def test_unknown_run_id_target_says_how_to_find_run_ids():
    out = _plan_error("results/cpu/runs/cutmix-cifar10-resnet20-s0-00000000/metrics.json", "--config", "scale=cpu")
    assert "unknown run id 'cutmix-cifar10-resnet20-s0-00000000'" in out and "Did you mean" in out
    assert "snakemake -n --config scale=cpu" in out and "KeyError" not in out


def _broken_paper_repo(tmp_path: Path, exp_text: str) -> Path:
    (tmp_path / "broken").mkdir()
    r = _copy_repo(tmp_path / "broken")
    _add_paper(r, "tinya", "erm, {name: mixup, alpha: 0.4}", "mixup")
    (r / "papers/tinya/experiments.yaml").write_text(exp_text)
    return r


def test_a_typo_in_a_scale_that_is_not_run_fails_the_dry_run(tmp_path):
    import common.config

    if not hasattr(common.config, "validate_all"):
        pytest.skip("common.config.validate_all is not in this tree yet")
    exp = TINY.format(name="tinya", methods="erm", method="erm").replace("claims:", """\
  paper:
    defaults:
      dataset: {name: digits}
      model: {name: mlp}
      train: {epochs: 2, batch_size: 128, lr: 0.05, epoch: 3}
    grid:
      - vary: {method: [erm], seed: [0]}
claims:""")
    p = _smk(_broken_paper_repo(tmp_path, exp), "-n", check=False)
    assert p.returncode != 0 and "epoch" in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]


def test_a_claim_naming_an_unknown_method_fails_the_dry_run(tmp_path):
    import common.aggregate

    if not hasattr(common.aggregate, "validate_claims"):
        pytest.skip("common.aggregate.validate_claims is not in this tree yet")
    exp = TINY.format(name="tinya", methods="erm, {name: mixup, alpha: 0.4}", method="mixupp")
    p = _smk(_broken_paper_repo(tmp_path, exp), "-n", check=False)
    assert p.returncode != 0 and "mixupp" in p.stderr and "papers/tinya" in p.stderr, p.stderr[-2000:]
    assert "Traceback" not in p.stderr


def test_readme_states_the_two_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert blocks, "README has no command block"
    first = [line for line in blocks[0].splitlines() if line.strip() and not line.startswith("#")]
    assert len(first) == 2 and "snakemake" in first[0] and "pytest" in first[1]
    ci = (ROOT / ".ci/run").read_text()
    assert first[1].replace("pip install", "pip install -q") in ci or first[1] in ci


def test_tiny_paper_template_is_valid():
    # keep the embedded template honest: it must validate like any paper folder
    import yaml

    from common.config import expand_grid, validate

    exp = yaml.safe_load(textwrap.dedent(TINY.format(name="tinyz", methods="erm", method="erm")))
    validate(exp, "experiments.schema.json", "tiny")
    assert len(expand_grid(exp, "quick", "tiny")) == 1
