"""Code provenance: a run is tied to what the interpreter runs of the modules that compute it.

``code_digest(cfg)`` covers the trainer and the modules registering the run's method, loss terms,
model and dataset, with what they import (found from the import statements); it changes with a real
edit of one of them, never with comments, docstrings or formatting, the checkout's location, line
endings or the Python version, and never with modules the run does not import (aggregation,
benchmarks, another paper). ``stale`` / ``stale_runs`` name the runs the current code did not
produce; ``compare-and-pin`` pins them only after old and new code trained a sample identically.
"""
from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rel_helpers import ROOT, env, tiny

from common.config import plan, resolve

MIXPRO = {"method": {"name": "mixpro"}, "dataset": {"name": "digits"}, "model": {"name": "resnet8"}}
CODE_DIRS = ("common", "papers", "benchmarks")


def _copy_code(dest: Path) -> Path:
    """A copy of the repository's code (common/, papers/, benchmarks/) at another absolute path."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in CODE_DIRS:
        shutil.copytree(ROOT / d, dest / d, ignore=ignore)
    return dest


def _edit(path: Path) -> None:
    """A real change: one more statement the interpreter runs."""
    path.write_text(path.read_text() + "\n_edited_by_a_test = 1\n")


def _files(cfg: dict, root=None, cache=None) -> set[str]:
    from common.codehash import code_files

    return {p.as_posix() for p in code_files(cfg, root, cache)}


# --------------------------------------------------------------------------- which files
def test_code_files_are_the_trainer_and_the_registering_modules_with_their_imports():
    from common.codehash import code_files

    files = _files(MIXPRO)
    assert {"common/train.py", "common/__init__.py", "papers/__init__.py", "papers/mixpro/__init__.py",
            "papers/mixpro/method.py", "common/attention.py"} <= files  # attention: imported by MixPro only
    assert not {f for f in files if f.startswith("common/aggregate/")}
    assert not {"common/codehash.py", "common/recipe.py", "papers/mixpro/plots.py"} & files
    assert {f.split("/")[1] for f in files if f.startswith("papers/") and f.count("/") > 1} == {"mixpro"}
    assert "common/attention.py" not in _files({**MIXPRO, "method": {"name": "mixup"}})
    assert [p.as_posix() for p in code_files(MIXPRO)] == sorted(files)
    assert all(not Path(f).is_absolute() for f in files)


@pytest.mark.parametrize("cfg,module", [
    (MIXPRO, "papers.mixpro.method"),
    ({"method": {"name": "c_mixup"}, "dataset": {"name": "airfoil"}, "model": {"name": "mlp"}}, "papers.c_mixup.method"),
])
def test_the_static_closure_covers_every_module_the_interpreter_imports(cfg, module):
    """Import the trainer and the registering module in a fresh interpreter: every project module
    that ends up in sys.modules is one of code_files (the static closure also has the function-level
    imports, which run later)."""
    code = (f"import json, sys; import common.train, {module}; "
            "print(json.dumps(sorted(m.__file__ for n, m in list(sys.modules.items()) "
            "if n.split('.')[0] in ('common', 'papers') and getattr(m, '__file__', None))))")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    imported = {Path(f).resolve().relative_to(ROOT).as_posix() for f in json.loads(p.stdout)}
    assert "common/train.py" in imported and module.replace(".", "/") + ".py" in imported
    assert imported <= _files(cfg), sorted(imported - _files(cfg))


@pytest.mark.parametrize("kind", ["method", "model", "dataset"])
def test_every_registered_name_brings_its_registering_module(kind):
    """Property over the live registries: a run naming X digests the file registering X (and its
    package's __init__.py) besides the trainer."""
    from common.data import DATASETS
    from common.methods import METHODS, LossTerm
    from common.models import MODELS

    reg = {"method": METHODS, "model": MODELS, "dataset": DATASETS}[kind]
    cache = {}
    for name in reg.names():
        obj = reg.get(name)
        cfg = {"method": {"name": "erm"}, "dataset": {"name": "digits"}, "model": {"name": "resnet8"}}
        if kind == "method" and isinstance(obj, type) and issubclass(obj, LossTerm):
            cfg["method"] = {"name": f"erm+{name}"}
        else:
            cfg[kind] = {"name": name}
        files = _files(cfg, cache=cache)
        path = Path(*obj.__module__.split("."))
        package_init = (path.parent / "__init__.py").as_posix()
        assert {path.with_suffix(".py").as_posix(), package_init, "common/train.py"} <= files, (kind, name)


# --------------------------------------------------------------------------- the digest
def test_digest_is_16_hex_deterministic_and_location_independent(tmp_path):
    from common.codehash import code_digest

    d = code_digest(MIXPRO)
    assert len(d) == 16 and int(d, 16) >= 0
    assert code_digest(MIXPRO) == d
    assert code_digest(MIXPRO, _copy_code(tmp_path / "a" / "deep" / "copy")) == d
    assert code_digest(MIXPRO, ROOT) == d


@pytest.mark.parametrize("edit, changes", [
    ("common/train.py", True),
    ("common/mixing.py", True),
    ("common/attention.py", True),  # imported by MixPro's method
    ("papers/mixpro/method.py", True),
    ("papers/mixpro/__init__.py", True),
    ("papers/cutmix/method.py", False),  # another paper's code
    ("common/aggregate/cli.py", False),  # aggregation, not training
    ("common/codehash.py", False),  # records the digest, computes nothing of the run
    ("common/recipe.py", False),
    ("papers/mixpro/plots.py", False),
    ("benchmarks/run.py", False),
])
def test_digest_changes_exactly_with_the_code_that_computes_the_run(tmp_path, edit, changes):
    from common.codehash import code_digest

    root = _copy_code(tmp_path / "repo")
    before = code_digest(MIXPRO, root)
    _edit(root / edit)
    assert (code_digest(MIXPRO, root) != before) is changes


def _docstrings_reworded(source: str) -> str:
    """The module re-written from its syntax tree (no comments, other quotes, spacing and line breaks)
    with every docstring reworded: what a comment/docstring/format-only edit can do."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0].value, "value", None), str):
            body[0].value.value = "Reworded. " + body[0].value.value
    return "# a new leading comment\n" + ast.unparse(tree).replace("\n\n", "\n\n\n") + "\n# trailing comment\n"


def test_comment_docstring_and_format_edits_never_change_the_digest(tmp_path):
    """Every file the run executes, reformatted, stripped of comments and with reworded docstrings,
    gives the same digest; one real statement more in one of them does not."""
    from common.codehash import code_digest

    root = _copy_code(tmp_path / "repo")
    before = code_digest(MIXPRO, root)
    for rel in _files(MIXPRO, root):
        f = root / rel
        f.write_text(_docstrings_reworded(f.read_text()))
    assert code_digest(MIXPRO, root) == before
    (root / "papers/mixpro/method.py").write_text((root / "papers/mixpro/method.py").read_text() + "x = 1\n")
    assert code_digest(MIXPRO, root) != before


def test_crlf_checkout_gives_the_same_digest_and_contents_still_count(tmp_path):
    from common.codehash import code_digest

    root = _copy_code(tmp_path / "repo")
    for p in (root / "common").glob("*.py"):
        p.write_bytes(p.read_bytes().replace(b"\n", b"\r\n"))
    assert code_digest(MIXPRO, root) == code_digest(MIXPRO)
    mixing = root / "common" / "mixing.py"  # the converted files still count by their contents
    mixing.write_bytes(mixing.read_bytes() + b"\r\n_edited_by_a_test = 1\r\n")
    assert code_digest(MIXPRO, root) != code_digest(MIXPRO)


@pytest.mark.parametrize("python", ["python3.11", "python3.12", "python3.13"])
def test_the_file_digest_is_the_same_on_every_python_version(python):
    """ast.dump's text differs between Python versions (3.13 leaves out empty fields); the digest's own
    rendering of the tree does not, so a run stays fresh when the interpreter is upgraded."""
    from common.codehash import source_digest

    found = [shutil.which(python), *sorted(Path.home().glob(f".pyenv/versions/{python[6:]}.*/bin/python"))]
    exe = next((str(x) for x in found if x and subprocess.run([x, "-c", "import ast"], capture_output=True).returncode == 0),
               None)
    if exe is None:
        pytest.skip(f"{python} is not installed")
    files = sorted(p.relative_to(ROOT).as_posix() for d in ("common", "papers") for p in (ROOT / d).rglob("*.py"))
    code = ("import json, sys; from pathlib import Path; from common.codehash import source_digest; "
            f"print(json.dumps({{f: source_digest(Path(f).read_bytes()) for f in {files!r}}}))")
    p = subprocess.run([exe, "-I", "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); {code}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {f: source_digest((ROOT / f).read_bytes()) for f in files}


def test_metrics_and_checkpoints_record_the_code_digest(reference):
    from common.codehash import code_digest

    want = code_digest(resolve(tiny()))
    assert reference["metrics"]["provenance"]["code_digest"] == want
    assert torch.load(reference["ckpt"] / "last.pt", weights_only=True)["code_digest"] == want  # (prev.pt: removed at the end)


# --------------------------------------------------------------------------- which runs an edit stales
def _fake_results(root: Path, runs: dict, scale: str = "cpu") -> None:
    """results/<scale>/runs/<id>/metrics.json for {id: (config, recorded code digest or None)}."""
    for rid, (cfg, digest) in runs.items():
        prov = {"config": cfg} | ({"code_digest": digest} if digest else {})
        p = root / "results" / scale / "runs" / rid / "metrics.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({"run_id": rid, "provenance": prov}))


def _uses_package(cfg: dict, package: str) -> bool:
    """The run names something registered in ``papers/<package>`` (from the registries, not codehash)."""
    from common.data import DATASETS
    from common.methods import METHODS
    from common.models import MODELS

    names = [(METHODS, n) for n in cfg["method"]["name"].split("+")] + [(DATASETS, cfg["dataset"]["name"])]
    if not cfg["model"]["name"].startswith("timm:"):
        names.append((MODELS, cfg["model"]["name"]))
    return any(reg.get(n).__module__.startswith(f"papers.{package}.") for reg, n in names)


@pytest.fixture(scope="module")
def cpu_plan():
    return plan("cpu", ROOT)[0]


def test_an_edit_stales_exactly_the_runs_that_execute_it(tmp_path, cpu_plan):
    """Over every run of the cpu plan, each recorded as computed by the current code: editing
    common/aggregate/ and benchmarks/ stales no run, editing CutMix's method stales exactly the runs
    naming something papers/cutmix registers, editing the trainer stales every run."""
    from common.codehash import code_digest, stale_runs

    root = _copy_code(tmp_path / "repo")
    cache = {}
    _fake_results(root, {rid: (cfg, code_digest(cfg, root, cache)) for rid, cfg in cpu_plan.items()})
    assert stale_runs("cpu", root, cpu_plan) == []
    for f in [*(root / "common" / "aggregate").rglob("*.py"), *(root / "benchmarks").rglob("*.py")]:
        _edit(f)
    assert stale_runs("cpu", root, cpu_plan) == []
    _edit(root / "papers" / "cutmix" / "method.py")
    cutmix = sorted(rid for rid, cfg in cpu_plan.items() if _uses_package(cfg, "cutmix"))
    assert 0 < len(cutmix) < len(cpu_plan)
    assert stale_runs("cpu", root, cpu_plan) == cutmix
    _edit(root / "common" / "train.py")
    assert stale_runs("cpu", root, cpu_plan) == sorted(cpu_plan)


# --------------------------------------------------------------------------- stale runs and pins
def _subprocess_cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "common.codehash", *args, "--root", str(root)], cwd=root,
                          env=env(), capture_output=True, text=True, timeout=300)


def _pin_file(pins: dict) -> str:
    return json.dumps({"checks": [{"base": "x"}], "pins": {r: {"digest": d, "check": 0} for r, d in pins.items()}})


def test_stale_runs_names_produced_pinned_and_unpinned_runs(tmp_path):
    from common.codehash import code_digest, stale_runs

    root = _copy_code(tmp_path / "repo")
    now = code_digest(MIXPRO, root)
    _fake_results(root, {"produced": (MIXPRO, now), "pinned": (MIXPRO, None), "unpinned": (MIXPRO, None),
                         "other": (MIXPRO, "f" * 16), "no-config": (None, now)})
    (root / "results" / "cpu" / "code_pins.json").write_text(_pin_file({"pinned": now, "other": "1" * 16}))
    runs = {rid: MIXPRO for rid in ("produced", "pinned", "unpinned", "other", "not-run-yet")} | {"no-config": None}
    assert stale_runs("cpu", root, runs) == ["no-config", "other", "unpinned"]
    assert stale_runs("quick", root, runs) == []
    r = _subprocess_cli(root, "stale", "--scale", "cpu")
    assert r.returncode == 0 and r.stdout.split() == ["no-config", "other", "unpinned"], r.stderr


def test_a_truncated_metrics_json_is_named_not_called_other_code(tmp_path):
    """A committed metrics.json cut short is an error naming the file (restore or delete it), not a run
    "computed by other code" that the workflow would quietly retrain over the committed result."""
    from common.codehash import stale_runs

    root = _copy_code(tmp_path / "repo")
    _fake_results(root, {"ok": (MIXPRO, None), "cut": (MIXPRO, None)})
    cut = root / "results" / "cpu" / "runs" / "cut" / "metrics.json"
    cut.write_text(cut.read_text()[:25])
    with pytest.raises(ValueError) as e:
        stale_runs("cpu", root, {"ok": MIXPRO, "cut": MIXPRO})
    assert f"unreadable (truncated?) metrics.json at {cut}" in str(e.value) and "git checkout" in str(e.value)
    r = _subprocess_cli(root, "stale", "--scale", "cpu")
    assert r.returncode == 2 and f"unreadable (truncated?) metrics.json at {cut}" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


@pytest.mark.parametrize("text", ["[1, 2]", '{"a": "0123456789abcdef"}', '{"checks": [], "pins": {"a": {"digest": "x"}}}'])
def test_an_unreadable_pins_file_is_named(tmp_path, text):
    root = _copy_code(tmp_path / "repo")
    _fake_results(root, {"a": (MIXPRO, None)})
    (root / "results" / "cpu" / "code_pins.json").write_text(text)
    r = _subprocess_cli(root, "stale", "--scale", "cpu")
    assert r.returncode == 2 and "code_pins.json" in r.stderr and "compare-and-pin" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_run_without_recorded_config_cannot_be_pinned(tmp_path, capsys):
    from common.codehash import main

    root = _copy_code(tmp_path / "repo")
    _fake_results(root, {"ok": (MIXPRO, None), "broken": (None, None)})
    assert main(["compare-and-pin", "--scale", "cpu", "--base", "HEAD", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "metrics.json of broken: retrain" in err
    assert not (root / "results" / "cpu" / "code_pins.json").exists()


# --------------------------------------------------------------------------- compare-and-pin
def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture()
def pin_repo(tmp_path):
    """A git repository of the code with two committed quick runs (recorded configs and digests)."""
    from common.codehash import code_digest

    root = _copy_code(tmp_path / "repo")
    cfgs = {"erm-a": resolve(tiny(method={"name": "erm"}, **{"train.epochs": 2})),
            "mixup-b": resolve(tiny(**{"train.epochs": 2}))}
    _fake_results(root, {rid: (cfg, code_digest(cfg, root)) for rid, cfg in cfgs.items()}, scale="quick")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "base")
    return root


def _compare_and_pin(root: Path) -> subprocess.CompletedProcess:
    return _subprocess_cli(root, "compare-and-pin", "--scale", "quick", "--base", "HEAD", "--sample", "mixup-b",
                           "--train-size", "64", "--test-size", "100")


@pytest.mark.slow
def test_compare_and_pin_pins_only_after_identical_results(pin_repo):
    """A behaviour-neutral refactor (a new unused helper: every digest changes) trains the sample with
    the committed and the edited code, finds them identical and pins both runs with the evidence; a
    behaviour change (the loss doubled) is named and pins nothing."""
    root = pin_repo
    (root / "common" / "train.py").write_text((root / "common" / "train.py").read_text()
                                              + "\n\ndef _unused_helper():\n    return None\n")
    assert _subprocess_cli(root, "stale", "--scale", "quick").stdout.split() == ["erm-a", "mixup-b"]
    r = _compare_and_pin(root)
    assert r.returncode == 0, r.stderr
    assert "mixup-b: identical" in r.stdout and "pinned 2 run(s)" in r.stdout
    pins_file = root / "results" / "quick" / "code_pins.json"
    pins = json.loads(pins_file.read_text())
    (check,) = pins["checks"]
    assert check["base"] == _git(root, "rev-parse", "HEAD") and check["head"].endswith("-dirty")
    assert list(check["results"]) == ["mixup-b"] and check["sample_rule"] == "given on the command line"
    assert check["hardware"]["cpu_model"] and check["shortening"]["train.epochs"] == 1
    assert sorted(pins["pins"]) == ["erm-a", "mixup-b"] and {p["check"] for p in pins["pins"].values()} == {0}
    assert _subprocess_cli(root, "stale", "--scale", "quick").stdout == ""
    assert _git(root, "worktree", "list").count("\n") == 0  # the old code's checkout is gone

    losses = root / "common" / "losses.py"
    losses.write_text(losses.read_text() + "\n_single = cross_entropy, mixed_cross_entropy\n\n\n"
                      "def cross_entropy(*args, **kwargs):\n    return 2 * _single[0](*args, **kwargs)\n\n\n"
                      "def mixed_cross_entropy(*args, **kwargs):\n    return 2 * _single[1](*args, **kwargs)\n")
    before = pins_file.read_text()
    r = _compare_and_pin(root)
    assert r.returncode == 1 and "mixup-b: DIFFERENT" in r.stdout and "different results for mixup-b" in r.stderr
    assert pins_file.read_text() == before


def test_the_default_sample_is_one_run_per_method_dataset_and_model(cpu_plan):
    from common.codehash import sample_runs, shortened
    from common.config import validate_run_config

    sample = sample_runs(cpu_plan)
    settings = {(c["method"]["name"], c["dataset"]["name"], c["model"]["name"]) for c in cpu_plan.values()}
    assert len(sample) == len(settings)
    for rid in sample:  # the first id of its setting, shortened to a valid config
        cfg = cpu_plan[rid]
        same = [r for r, c in cpu_plan.items() if (c["method"]["name"], c["dataset"]["name"], c["model"]["name"])
                == (cfg["method"]["name"], cfg["dataset"]["name"], cfg["model"]["name"])]
        assert rid == min(same)
        short = shortened(cfg, 1, 512, 1000)
        validate_run_config(resolve(short), rid)
        n = short["dataset"].get("train_size")  # absent: a split not known to be larger than the cap
        assert short["train"]["epochs"] == 1 and (n is None or n <= max(512, cfg["train"]["batch_size"]))
        assert "train_size" in short["dataset"] or cfg["dataset"]["name"] == "no2"  # sizes depend on its files


# --------------------------------------------------------------------------- through the workflow
@pytest.fixture(scope="module")
def trained_repo(tmp_path_factory):
    """A copy of the workflow with CutMix's package and a tiny paper (erm, cutmix) whose two runs are
    trained by snakemake."""
    from workflow_helpers import _add_paper, _copy_repo, _smk

    r = _copy_repo(tmp_path_factory.mktemp("wf"))
    shutil.copytree(ROOT / "papers" / "cutmix", r / "papers" / "cutmix",
                    ignore=shutil.ignore_patterns("__pycache__", "experiments.yaml", "reported.csv"))
    _add_paper(r, "tinyc", "erm, cutmix", "cutmix")
    _smk(r, "--cores", "2", *_run_targets(r))
    return r


def _run_targets(repo: Path) -> list[str]:
    from common.config import plan as plan_

    return [f"results/quick/runs/{rid}/metrics.json" for rid in sorted(plan_("quick", repo)[0])]


@pytest.mark.slow
def test_a_comment_only_edit_schedules_nothing(trained_repo):
    from common.workplan import retrained_stamp
    from workflow_helpers import _smk

    method = trained_repo / "papers" / "cutmix" / "method.py"
    original = method.read_text()
    try:
        method.write_text(_docstrings_reworded(original))
        p = _smk(trained_repo, "-n", *_run_targets(trained_repo))
        assert "Nothing to be done" in p.stdout + p.stderr, p.stdout[-2000:]
        _edit(method)
        # a stale run is retrained through its 'retrained' stamp, which the default target asks for
        stamps = [retrained_stamp("quick", t.split("/")[3]) for t in _run_targets(trained_repo) if "/cutmix-" in t]
        p = _smk(trained_repo, "-n", *_run_targets(trained_repo), *stamps)
        out = p.stdout + p.stderr
        assert "1 run(s) were computed by other code" in out and "rule train:" in out, out[-2000:]
        assert "Nothing to be done" not in out
    finally:
        method.write_text(original)


@pytest.mark.slow
def test_a_truncated_metrics_json_stops_the_plan_naming_it(trained_repo):
    from workflow_helpers import _smk

    m = sorted((trained_repo / "results" / "quick" / "runs").glob("cutmix*/metrics.json"))[0]
    original = m.read_text()
    try:
        m.write_text(original[: len(original) // 2])
        p = _smk(trained_repo, "-n", check=False)
        assert p.returncode != 0 and f"unreadable (truncated?) metrics.json at {m}" in p.stdout + p.stderr
        assert m.read_text() == original[: len(original) // 2]  # left as it was, for the user to restore
    finally:
        m.write_text(original)


def test_shortened_runs_cap_only_splits_known_to_be_larger():
    from common.shortened import capped_sizes

    assert capped_sizes({"name": "cifar10"}, 512, 1000) == {"name": "cifar10", "train_size": 512, "test_size": 1000}
    assert capped_sizes({"name": "cifar10", "train_size": 300}, 512) == {"name": "cifar10", "train_size": 300}
    assert capped_sizes({"name": "digits"}, test=1000) == {"name": "digits"}  # 500 test samples: used whole
    assert capped_sizes({"name": "no2"}, 512, 1000) == {"name": "no2"}  # sizes depend on its files
