"""The Snakemake workflow end to end, on a throw-away copy of the repository.

Two tiny paper folders (2 runs x 2 epochs on digits) are trained through a default `snakemake`;
then we check what each later invocation schedules (nothing; one deleted run; an edited paper; a
stale-code run; a subset; a new paper), that the tree stays clean and that the report has every
caption. The real repository (a fresh clone at cpu scale, lint, plan-time errors) is tested in
test_workflow_repo.py.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from workflow_helpers import (CROSS_TABLE, NEW_METHOD, ROOT, _add_paper, _copy_repo, _git, _jobs, _planned,
                              _smk, tree_state)


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
    for key in ("config", "seed", "git_commit", "versions", "wall_time_sec", "threads", "hardware", "device"):
        assert key in prov
    assert "torch" in prov["versions"]
    assert prov["hardware"]["torch_cpu_capability"] and "cpu_model" in prov["hardware"]
    table = (repo / "results/quick/tables/tinya.csv").read_text()
    assert "paper,method,dataset,model,setting,setting_label,metric,mean,std,n_seeds" in table.splitlines()[0]
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
    before = tree_state(clone)
    p = _smk(clone, "-n")
    assert "Nothing to be done" in p.stdout + p.stderr, p.stdout[-2000:]
    assert tree_state(clone) == before  # adopted without touching a file
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
    victim = sorted((clone / "results/quick/runs").glob("mixup*/metrics.json"))[0]
    m = json.loads(victim.read_text())
    m["provenance"]["code_digest"] = "0" * 16  # computed by some other code
    victim.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    _scramble_checkout_times(clone, "results/quick/runs")
    before = tree_state(clone)
    for attempt in ("fresh clone", "again"):  # the dry run marks nothing away: still scheduled
        p = _smk(clone, "-n")
        assert tree_state(clone) == before, attempt
        jobs = _jobs(p.stdout)
        assert jobs.get("train") == 1 and victim.parent.name in p.stdout, (attempt, jobs)
        assert jobs.get("paper_table") == 1 and jobs.get("summary") == 1, (attempt, jobs)
        assert "computed by other code" in p.stderr
    other = [f for f in (clone / "results/quick/runs").glob("*/metrics.json") if f != victim][0]
    t = other.stat().st_mtime_ns
    _smk(clone, "--cores", "2")
    assert json.loads(victim.read_text())["provenance"].get("code_digest") != "0" * 16
    assert other.stat().st_mtime_ns == t
    assert not [f for f in (clone / "results/quick/tmp").rglob("*") if f.is_file()]  # the stamp was removed
    p = _smk(clone, "-n")
    assert "Nothing to be done" in p.stdout + p.stderr, p.stdout[-2000:]




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
