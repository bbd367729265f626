"""The Snakemake workflow end to end, on a throw-away copy of the repository.

A tiny paper folder (2 runs x 2 epochs on digits) is trained through `snakemake`; then we check
that the dry run has nothing to do, that deleting one run reruns only that run and its
aggregates, and that adding a new paper folder with a new method schedules only its own jobs.
"""
from __future__ import annotations

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
    for name in ("Snakefile", "common", "config", "profiles", "report", "environment.yml", "README.md"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy(src, dst / name)
    (dst / "papers").mkdir()
    shutil.copy(ROOT / "papers" / "__init__.py", dst / "papers" / "__init__.py")
    shutil.copytree(ROOT / "papers" / "mixup", dst / "papers" / "mixup", ignore=shutil.ignore_patterns("__pycache__"))
    return dst


CROSS_TABLE = '''\
from pathlib import Path


def make_tables(paths, out_dir):
    Path(out_dir, "n_runs.txt").write_text(str(len(paths)))
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


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    r = _copy_repo(tmp_path_factory.mktemp("wf"))
    _add_paper(r, "tinya", "erm, {name: mixup, alpha: 0.4}", "mixup")
    (r / "papers/tinya/tables.py").write_text(CROSS_TABLE)
    _smk(r, "--config", "papers=[tinya]", "--cores", "2")
    return r


@pytest.mark.slow
def test_quick_run_produces_tables_figures_and_provenance(repo):
    runs = sorted((repo / "results/quick/runs").glob("*/metrics.json"))
    assert len(runs) == 2
    m = json.loads(runs[0].read_text())
    prov = m["provenance"]
    for key in ("config", "seed", "git_commit", "versions", "wall_time_sec", "threads", "device"):
        assert key in prov
    assert "torch" in prov["versions"]
    table = (repo / "results/quick/tables/tinya.csv").read_text()
    assert "paper,method,dataset,model,setting,metric,mean,std,n_seeds" in table.splitlines()[0]
    assert list((repo / "figures/quick/tinya").glob("*.png"))
    assert (repo / "results/quick/summary.md").exists() and (repo / "results/quick/summary.tex").exists()
    readme = (repo / "papers/tinya/README.md").read_text()
    assert "| `erm` |" in readme  # the generated table landed between the markers
    # a paper's tables.py hook gets every run of the scale (cross-paper tables)
    assert (repo / "results/quick/cross/n_runs.txt").read_text() == "2"


@pytest.mark.slow
def test_nothing_to_do_then_only_deleted_run_reruns(repo):
    p = _smk(repo, "--config", "papers=[tinya]", "-n")
    assert "Nothing to be done" in p.stdout + p.stderr
    victim = sorted((repo / "results/quick/runs").glob("*/metrics.json"))[0]
    victim.unlink()
    p = _smk(repo, "--config", "papers=[tinya]", "-n")
    jobs = _jobs(p.stdout + p.stderr)
    assert jobs.get("train") == 1, jobs
    assert set(jobs) <= {"train", "paper_table", "paper_figures", "summary", "readmes", "all"}
    untouched = sorted((repo / "results/quick/runs").glob("*/metrics.json"))
    before = {p: p.stat().st_mtime_ns for p in untouched}
    _smk(repo, "--config", "papers=[tinya]", "--cores", "2")
    assert victim.exists()
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # the other run was not retrained


@pytest.mark.slow
def test_editing_a_papers_claims_rebuilds_its_aggregates_not_its_runs(repo):
    """The default profile leaves mtime out of the rerun triggers; the tables still follow an
    edited experiments.yaml / reported.csv (their content hash is a param of the rules)."""
    exp = repo / "papers/tinya/experiments.yaml"
    text = exp.read_text()
    try:
        exp.write_text(text.replace("method beats erm", "method beats erm (reworded)"))
        jobs = _jobs(_smk(repo, "--config", "papers=[tinya]", "-n").stdout)
        assert "train" not in jobs and jobs.get("paper_table") == 1 and jobs.get("paper_figures") == 1, jobs
    finally:
        exp.write_text(text)
    p = _smk(repo, "--config", "papers=[tinya]", "-n")
    assert "Nothing to be done" in p.stdout + p.stderr


@pytest.mark.slow
def test_adding_a_method_folder_schedules_only_its_jobs(repo):
    _add_paper(repo, "tinyb", "erm, fixmix_test", "fixmix_test", code=NEW_METHOD)
    p = _smk(repo, "--config", "papers=[tinya,tinyb]", "-n")
    out = p.stdout + p.stderr
    jobs = _jobs(out)
    # erm in tinyb is byte-identical to tinya's erm run -> shared, not retrained
    assert jobs.get("train") == 1, jobs
    assert "fixmix_test-digits" in out
    trained = re.findall(r"results/quick/runs/([^/\s]+)/metrics.json", out)
    assert all(t.startswith("fixmix_test") for t in trained if f"output: results/quick/runs/{t}" in out)
    assert jobs.get("paper_table") == 1 and jobs.get("paper_figures") == 1  # only tinyb's aggregates


@pytest.mark.slow
def test_a_fresh_clone_adopts_committed_aggregates_but_not_stale_ones(repo, tmp_path):
    """In a fresh clone (no .snakemake metadata) git's path-order checkout makes papers/ and
    results/<scale>/runs/ newer than figures/ and the tables; the committed aggregates still count as
    up to date because readmes.done holds the digest of the inputs they were built from."""
    clone = tmp_path / "clone"
    shutil.copytree(repo, clone, ignore=shutil.ignore_patterns(".snakemake", "__pycache__"))
    later = time.time() + 60
    for f in [*(clone / "papers").rglob("*"), *(clone / "results/quick/runs").rglob("*")]:
        os.utime(f, (later, later))
    p = _smk(clone, "--config", "papers=[tinya]", "-n")
    assert "Nothing to be done" in p.stdout + p.stderr, p.stdout[-2000:]
    # an input that differs from the recorded digest is not adopted: its aggregates rerun, its runs do not
    exp = clone / "papers/tinya/experiments.yaml"
    exp.write_text(exp.read_text().replace("method beats erm", "method beats erm (edited)"))
    os.utime(exp, (later + 60, later + 60))
    jobs = _jobs(_smk(clone, "--config", "papers=[tinya]", "-n").stdout)
    assert "train" not in jobs and jobs.get("paper_table") == 1 and jobs.get("readmes") == 1, jobs


def test_lint_is_clean():
    p = subprocess.run(SNAKEMAKE + ["--lint"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Congratulations" in p.stdout + p.stderr


@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_other_scales_parse(scale):
    p = subprocess.run(SNAKEMAKE + ["-n", "--config", f"scale={scale}"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "MIXREPRO_DATA": "/nonexistent-data-root"})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]


def test_bad_workflow_config_is_rejected_with_suggestion():
    p = subprocess.run(SNAKEMAKE + ["-n", "--config", "scael=cpu"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode != 0
    assert "scael" in p.stdout + p.stderr and "scale" in p.stdout + p.stderr


def test_unknown_scale_is_rejected():
    p = subprocess.run(SNAKEMAKE + ["-n", "--config", "scale=huge"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode != 0 and "huge" in p.stdout + p.stderr


def test_report_builds(repo, tmp_path):
    out = tmp_path / "report.html"
    _smk(repo, "--config", "papers=[tinya]", "--report", str(out))
    html = out.read_text(errors="ignore")
    assert out.stat().st_size > 10_000 and "summary" in html.lower()


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
