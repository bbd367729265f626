"""The workflow on the real repository: a fresh `git clone` (committed cpu results, no Snakemake metadata)
plans nothing to train and only a new paper's jobs; a dry run writes nothing; a failing training job
leaves the committed results as they were; every aggregate job reads only its declared inputs;
`snakemake --lint` is clean; bad configs, papers, scales and run ids fail the dry run with a message;
the README states the two commands CI runs."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from workflow_helpers import (AUDIT_OPEN, ROOT, SNAKEMAKE, TINY, _add_paper, _copy_repo, _git, _jobs, _planned, _smk,
                              dry_run_jobs, files_read, tree_state)

WORKFLOW_FILES = ("Snakefile", "workflow", "profiles", "config")


def _clone(src: Path, dst: Path, branch: str | None = None) -> Path:
    subprocess.run(["git", "clone", "-q", *(["--branch", branch] if branch else []), str(src), str(dst)], check=True)
    return dst


def _this_branch() -> str:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    return subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()


def _workflow_on_top(dst: Path) -> None:
    """This tree's workflow files over a clone, so that uncommitted workflow changes are what is tested."""
    for name in WORKFLOW_FILES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, dst / name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, dst / name)


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A fresh `git clone` of this repository (committed cpu results, no .snakemake), with this
    tree's workflow files on top."""
    dst = _clone(ROOT, tmp_path_factory.mktemp("clone") / "repo", _this_branch())
    _workflow_on_top(dst)
    return dst


@pytest.fixture(scope="module")
def current_clone(tmp_path_factory):
    """A fresh clone of a commit whose cpu runs are all current: this tree's workflow files committed on
    top and, where the committed runs are not (test_fresh_clone_cpu_dry_run_trains_nothing_and_needs_no_data
    checks the repository itself), their pins. Cloned again, so file times are a fresh checkout's."""
    base = tmp_path_factory.mktemp("current")
    work = _clone(ROOT, base / "work", _this_branch())
    _workflow_on_top(work)
    env = {**os.environ, "PYTHONPATH": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
    stale = subprocess.run([sys.executable, "-m", "common.codehash", "stale", "--scale", "cpu"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    if stale:
        subprocess.run([sys.executable, "-m", "common.codehash", "pin", "--scale", "cpu", *stale], cwd=work, env=env,
                       check=True, capture_output=True)
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "--allow-empty", "-m", "test: this workflow, current runs")
    return _clone(work, base / "repo")


def _smk_clone(clone: Path, *args: str, data="/nonexistent-data-root", check=True, env=None):
    env = {**os.environ, "MIXREPRO_DATA": data, "PYTHONPATH": str(clone), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    p = subprocess.run(SNAKEMAKE + list(args), cwd=clone, capture_output=True, text=True, timeout=900, env=env)
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


def test_fresh_clone_with_a_new_paper_at_cpu_schedules_only_its_jobs(current_clone, tmp_path):
    """Adoption is per paper: a new paper folder in a fresh clone plans its own runs, table and
    figures and the cross-paper aggregates, never the committed papers' tables and figures."""
    clone = current_clone
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


def _data_root() -> str:
    root = os.environ.get("MIXREPRO_DATA")
    if not root or not (Path(root) / "cifar10").is_dir():
        pytest.skip("needs the data root with CIFAR-10 (MIXREPRO_DATA)")
    return root


def _codehash_stale(repo: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(repo), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "common.codehash", "stale", "--scale", "cpu"], cwd=repo, env=env,
                          capture_output=True, text=True, check=True).stdout.split()


@pytest.mark.slow
def test_current_fresh_clone_has_nothing_to_do_and_dry_runs_write_nothing(current_clone):
    """Committed aggregates whose recorded input digests match are adopted without touching a file: at
    quick and cpu scale a dry run leaves every file's content and time as it was (.snakemake/ aside)."""
    before = tree_state(current_clone)
    p = _smk_clone(current_clone, "-n", "--config", "scale=cpu")
    assert "Nothing to be done" in p.stdout + p.stderr, p.stdout[-3000:]
    assert _jobs(_smk_clone(current_clone, "-n").stdout).get("train"), "quick: everything to do"
    assert tree_state(current_clone) == before


@pytest.mark.slow
def test_a_method_code_change_schedules_only_its_runs_and_their_aggregates(current_clone, tmp_path):
    """After an edit of one method's code (committed), the cpu dry run schedules exactly the runs that code
    computes (common.codehash), their papers' aggregates and the cross-paper ones, and writes nothing."""
    data = _data_root()
    repo = _clone(current_clone, tmp_path / "repo")
    method = repo / "papers/cutmix/method.py"
    method.write_text(method.read_text() + "\n\ndef _a_change():\n    return None\n")
    _git(repo, "commit", "-qam", "cutmix: a code change")
    stale = _codehash_stale(repo)
    assert stale
    before = tree_state(repo)
    for attempt in ("first", "again"):  # nothing was marked away: the same plan twice
        out = _smk_clone(repo, "-n", "--config", "scale=cpu", data=data).stdout
        jobs = dry_run_jobs(out)
        trained = sorted(o.split("/")[3] for j in jobs if j["rule"] == "train" for o in j["output"][:1])
        assert trained == sorted(stale), attempt
        owners = sorted({p for p, ids in _plan_by_paper(repo).items() if set(ids) & set(stale)})
        tables = sorted(j["output"][0].split("/")[-1][: -len(".csv")] for j in jobs if j["rule"] == "paper_table")
        assert tables == owners and "cutmix" in owners, (tables, owners)
        assert _jobs(out).get("paper_figures") == len(owners) and _jobs(out).get("summary") == 1
        assert tree_state(repo) == before, attempt


def _plan_by_paper(repo: Path) -> dict[str, list[str]]:
    from common.workplan import Plan

    return Plan.build(repo, "cpu").by_paper


def _corrupt_cifar_zip(folder: Path) -> None:
    """A CIFAR-10 ImageFolder zip whose archive directory is fine (the plan's checks pass) but whose members
    fail their checksum when read."""
    folder.mkdir(parents=True)
    path = folder / "cifar10-jpeg-q75.zip"
    member = b"\xff\xd8not a jpeg" + bytes(64)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for split in ("train", "test"):
            z.writestr(f"{split}/airplane/00000.jpg", member)
    path.write_bytes(path.read_bytes().replace(member, member[::-1]))
    assert zipfile.is_zipfile(path)


@pytest.mark.slow
def test_a_failing_training_job_leaves_the_committed_run_as_it_was(current_clone, tmp_path):
    """A committed cpu run retrained on data whose corruption only shows when a member is read fails inside
    its job: its metrics.json, epochs.jsonl and benchmark file keep their bytes and `git status` is clean."""
    repo = _clone(current_clone, tmp_path / "repo")
    rid = next(r for r, cfg in sorted(_plan_runs(repo).items()) if cfg["dataset"]["name"] == "cifar10")
    _corrupt_cifar_zip(tmp_path / "data" / "cifar10")
    committed = [repo / f"results/cpu/runs/{rid}/{n}" for n in ("metrics.json", "epochs.jsonl")]
    committed.append(repo / f"results/cpu/benchmarks/{rid}.tsv")
    before = {f: f.read_bytes() for f in committed}
    assert _git(repo, "status", "--porcelain") == ""
    p = _smk_clone(repo, "--config", "scale=cpu", "--force", f"results/cpu/runs/{rid}/metrics.json", "--cores", "1",
                   data=str(tmp_path / "data"), check=False, env={"MIXREPRO_CACHE": str(tmp_path / "cache")})
    assert p.returncode != 0, p.stderr[-3000:]
    assert "corrupt" in (repo / f"logs/cpu/train/{rid}.log").read_text()
    assert {f: f.read_bytes() for f in committed} == before
    assert _git(repo, "status", "--porcelain") == ""


def _plan_runs(repo: Path) -> dict[str, dict]:
    from common.workplan import Plan

    return Plan.build(repo, "cpu").runs


@pytest.mark.slow
def test_aggregate_jobs_read_only_their_declared_inputs(current_clone, tmp_path):
    """Each aggregate job (a paper's table with its reported.csv, figures with a plots.py hook, an input
    digest, the summary with a tables.py hook and the benchmark files, the README splice), run through
    Snakemake with every file it opens recorded (sitecustomize audit hook), reads no file of the
    repository that is not among the job's declared inputs (its Python program aside)."""
    repo = _clone(current_clone, tmp_path / "repo")
    site, opened = tmp_path / "site", tmp_path / "opened"
    site.mkdir()
    opened.mkdir()
    (site / "sitecustomize.py").write_text(AUDIT_OPEN)
    jobs = []
    # targets forced together must not depend on one another (a forced job's dependents are only
    # rerun through their inputs, which are ancient() here: the committed aggregates are current)
    for targets in (["results/cpu/tables/rankmixup.csv", "figures/cpu/transmix"],
                    ["results/cpu/summary.md", "results/cpu/digests/transmix.sha256"], ["results/cpu/readmes.done"]):
        args = ["--config", "scale=cpu", "--force", *targets]
        planned = [j for j in dry_run_jobs(_smk_clone(repo, "-n", *args).stdout) if j["rule"] != "all"]
        assert sorted(j["output"][0] for j in planned) == sorted(targets), planned
        _smk_clone(repo, *args, "--cores", "2",
                   env={"PYTHONPATH": f"{repo}{os.pathsep}{site}", "MIXREPRO_AUDIT_OPEN": str(opened)})
        jobs += planned
    records = [json.loads(f.read_text()) for f in opened.glob("*.json")]
    command = {"paper_table": "table", "paper_figures": "figures", "paper_inputs_digest": "record", "summary": "summary",
               "splice_readmes": "readmes"}
    must_read = {"paper_table": "papers/rankmixup/reported.csv", "paper_figures": "papers/transmix/plots.py",
                 "paper_inputs_digest": "papers/transmix/experiments.yaml", "summary": "papers/rankmixup/tables.py",
                 "splice_readmes": "README.md"}
    for job in jobs:
        procs = [r for r in records if r["argv"][3] == command[job["rule"]] and job["output"][0] in r["argv"]]
        assert len(procs) == 1, (job["rule"], len(procs))
        read = files_read(procs[0]["opened"], repo)
        assert read <= set(job["input"]), (job["rule"], sorted(read - set(job["input"])))
        assert must_read[job["rule"]] in read and any(f.endswith("metrics.json") for f in read), job["rule"]
    summary = files_read(next(r for r in records if r["argv"][3] == "summary")["opened"], repo)
    assert any(f.endswith(".tsv") for f in summary) and any(f.endswith("epochs.jsonl") for f in summary)


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


def test_the_config_schema_names_the_scales_of_common_config():
    """Scale names have one home, common.config.SCALES (train.smk's wildcard is built from it); the
    workflow config schema's enum must say the same."""
    from common.config import SCALES

    schema = json.loads((ROOT / "workflow/schemas/config.schema.json").read_text())
    assert schema["properties"]["scale"]["enum"] == list(SCALES)


def test_paper_scale_dry_run_without_data_names_the_missing_files():
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
