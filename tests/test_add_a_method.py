"""The README's "Adding a method" is true as written: its files, written into a fresh `git clone`, make a
method that the quick dry run plans alone (its own runs, table and figures; the cross-paper jobs were
planned anyway) and that the paper-enumerating tests the README names accept without an edit elsewhere.
The files and commands are read from the README, so the steps and this test cannot drift apart."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workflow_helpers import ROOT, _git, dry_run_jobs, _smk

SECTION = re.search(r"^## Adding a method\n(.*?)^## ", (ROOT / "README.md").read_text(), re.S | re.M).group(1)
#: the files of step 1: a `papers/<name>/<file>` line, then its fenced block
FILES = dict(re.findall(r"^`(papers/[a-z0-9_]+/[^`]+)`.*?\n\n```\w*\n(.*?)```", SECTION, re.S | re.M))
PAPER = Path(next(iter(FILES))).parts[1]
#: the commands of step 2
DRY_RUN = re.search(r"`(snakemake -n [^`]+)`", SECTION).group(1)
PYTEST = re.search(r"`(pytest [^`]+)`", SECTION).group(1)


def test_the_readme_writes_a_whole_method_folder():
    assert set(FILES) == {f"papers/{PAPER}/{f}" for f in
                          ("__init__.py", "method.py", "experiments.yaml", "reported.csv", "README.md")}
    assert f"papers='[{PAPER}]'" in DRY_RUN


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A fresh clone of this checkout with this tree's code, workflow and tests on top (uncommitted edits count)."""
    dst = tmp_path_factory.mktemp("add") / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dst)], check=True)
    for name in ("common", "papers", "tests", "workflow", "config", "profiles", "Snakefile", "README.md"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, dst / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
        else:
            shutil.copy(ROOT / name, dst / name)
    _git(dst, "add", "-A")
    _git(dst, "commit", "-q", "--allow-empty", "-m", "test: this tree")
    return dst


def _planned(repo: Path) -> dict[str, set[str]]:
    """rule -> the outputs of its jobs in the quick dry run."""
    out = _smk(repo, "-n").stdout
    jobs: dict[str, set[str]] = {}
    for job in dry_run_jobs(out):
        jobs.setdefault(job["rule"], set()).update(job["output"])
    return jobs


def _run(repo: Path, cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(repo), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
def test_a_new_method_folder_is_all_it_takes(clone):
    before = _planned(clone)
    for rel, text in FILES.items():
        (clone / rel).parent.mkdir(parents=True, exist_ok=True)
        (clone / rel).write_text(text)
    _git(clone, "add", "-A")
    _git(clone, "commit", "-q", "-m", f"add {PAPER}")

    # the README's dry run: only this paper's runs, table and figures, nothing cross-paper
    subset = {j["rule"]: j["output"] for j in dry_run_jobs(_smk(clone, *shlex.split(DRY_RUN)[1:]).stdout)}
    assert {"train", "paper_table", "paper_figures"} <= set(subset) and "summary" not in subset, subset
    assert all(PAPER in o for r in ("paper_table", "paper_figures") for o in subset[r]), subset

    # the whole quick plan gains exactly this paper's new runs and its own aggregates
    after = _planned(clone)
    code = f"from common.config import plan; r, b = plan('quick', '.'); print(*[i for i in b['{PAPER}'] " \
           f"if all(i not in ids for p, ids in b.items() if p != '{PAPER}')])"
    own = _run(clone, [sys.executable, "-c", code]).stdout.split()
    assert own and all(i.startswith(PAPER + "-") for i in own)
    trained = {when: {m.group(1) for o in jobs["train"] if (m := re.search(r"runs/([^/]+)/metrics.json", o))}
               for when, jobs in (("before", before), ("after", after))}
    assert trained["after"] - trained["before"] == set(own) and trained["before"] <= trained["after"]
    for rule in ("paper_table", "paper_figures", "paper_inputs_digest"):
        assert all(PAPER in o for o in after[rule] - before[rule]) and after[rule] - before[rule], rule
    assert set(after) == set(before), (set(after), set(before))

    # the README's tests, in the clone, without editing anything outside the new folder
    p = _run(clone, [sys.executable, "-m", *shlex.split(PYTEST), "-n", "0", "-q", "-p", "no:cacheprovider"])
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert _git(clone, "status", "--porcelain", "--untracked-files=no") == ""
