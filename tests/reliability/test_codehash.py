"""Code provenance: a run is tied to the source files that compute it.

``code_digest(cfg)`` covers the core's training modules and the paper packages registering the
run's method, loss terms, model and dataset; it changes exactly when one of those files changes,
not with the checkout's location, the file order or aggregation/plotting code. ``code_pins.json``
accepts committed runs; ``stale`` / ``stale_runs`` name the runs the current code did not produce.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rel_helpers import ROOT, env, tiny

from common.config import resolve

MIXPRO = {"method": {"name": "mixpro"}, "dataset": {"name": "digits"}, "model": {"name": "resnet8"}}


def _copy_code(dest: Path) -> Path:
    """A copy of the repository's code (common/ and papers/) at another absolute path."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in ("common", "papers"):
        shutil.copytree(ROOT / d, dest / d, ignore=ignore)
    return dest


def _touch(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\n# edited\n")


# --------------------------------------------------------------------------- which files
def test_code_files_are_core_plus_the_registering_paper_packages():
    from common.codehash import code_files

    files = {p.as_posix() for p in code_files(MIXPRO)}
    core = {p.relative_to(ROOT).as_posix() for p in (ROOT / "common").rglob("*.py") if "__pycache__" not in p.parts}
    not_training = {f for f in core if f in ("common/aggregate.py", "common/recipe.py", "common/codehash.py")
                    or f.startswith("common/aggregate/")}
    assert core - not_training <= files
    assert not (not_training & files)
    assert "common/train.py" in files and "papers/mixpro/method.py" in files
    papers = {f.split("/")[1] for f in files if f.startswith("papers/")}
    assert "mixpro" in papers and not {"cutmix", "c_mixup", "rankmixup", "decoupled_mixup"} & papers
    assert not any(f.endswith(("/plots.py", "/tables.py")) for f in files)
    assert all(not Path(f).is_absolute() for f in files)
    assert [p.as_posix() for p in code_files(MIXPRO)] == sorted(files)


def test_timm_models_count_as_core():
    from common.codehash import code_files

    cfg = {"method": {"name": "erm"}, "dataset": {"name": "digits"}, "model": {"name": "timm:resnet18"}}
    assert all(p.as_posix().startswith("common/") for p in code_files(cfg))


@pytest.mark.parametrize("kind", ["method", "model", "dataset"])
def test_every_registered_name_brings_its_whole_paper_package(kind):
    """Property over the live registries: for every name registered from papers/<pkg>/, every .py
    file of that package except plots.py / tables.py is part of the digest's files."""
    from common.codehash import code_files
    from common.data import DATASETS
    from common.methods import METHODS, LossTerm
    from common.models import MODELS

    reg = {"method": METHODS, "model": MODELS, "dataset": DATASETS}[kind]
    checked = 0
    for name in reg.names():
        obj = reg.get(name)
        mod = obj.__module__.split(".")
        if kind == "method" and isinstance(obj, type) and issubclass(obj, LossTerm):
            cfg = {"method": {"name": f"erm+{name}"}, "dataset": {"name": "digits"}, "model": {"name": "resnet8"}}
        else:
            cfg = {"method": {"name": "erm"}, "dataset": {"name": "digits"}, "model": {"name": "resnet8"}}
            cfg[kind] = {"name": name}
        files = {p.as_posix() for p in code_files(cfg)}
        if mod[0] != "papers":
            continue
        pkg = ROOT / "papers" / mod[1]
        want = {p.relative_to(ROOT).as_posix() for p in pkg.rglob("*.py")
                if "__pycache__" not in p.parts and not (p.parent == pkg and p.name in ("plots.py", "tables.py"))}
        assert want <= files, (kind, name, sorted(want - files))
        checked += 1
    if kind == "method":
        assert checked >= 5  # the papers' methods are all registered from their packages


# --------------------------------------------------------------------------- the digest
def test_digest_is_16_hex_deterministic_and_location_independent(tmp_path):
    from common.codehash import code_digest

    d = code_digest(MIXPRO)
    assert len(d) == 16 and int(d, 16) >= 0
    assert code_digest(MIXPRO) == d
    assert code_digest(MIXPRO, _copy_code(tmp_path / "a" / "deep" / "copy")) == d
    assert code_digest(MIXPRO, ROOT) == d


def test_digest_does_not_depend_on_file_listing_order(monkeypatch):
    import common.codehash as ch

    d = ch.code_digest(MIXPRO)
    real = ch._py_files
    monkeypatch.setattr(ch, "_py_files", lambda folder: list(reversed(sorted(real(folder)))))
    assert ch.code_digest(MIXPRO) == d


@pytest.mark.parametrize("edit, changes", [
    ("common/train.py", True),
    ("common/mixing.py", True),
    ("papers/mixpro/method.py", True),
    ("papers/mixpro/__init__.py", True),
    ("papers/cutmix/method.py", False),  # another paper's code
    ("common/aggregate.py", False),  # aggregation, not training
    ("papers/mixpro/plots.py", False),
    ("README.md", False),
])
def test_digest_changes_exactly_with_the_code_that_computes_the_run(tmp_path, edit, changes):
    from common.codehash import code_digest

    root = _copy_code(tmp_path / "repo")
    before = code_digest(MIXPRO, root)
    target = root / edit
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("x\n")
        before = code_digest(MIXPRO, root)
    _touch(target)
    assert (code_digest(MIXPRO, root) != before) is changes


def test_crlf_checkout_gives_the_same_digest(tmp_path):
    from common.codehash import code_digest

    root = _copy_code(tmp_path / "repo")
    for p in (root / "common").glob("*.py"):
        p.write_bytes(p.read_bytes().replace(b"\n", b"\r\n"))
    assert code_digest(MIXPRO, root) == code_digest(MIXPRO)


def test_metrics_and_checkpoints_record_the_code_digest(reference):
    from common.codehash import code_digest

    want = code_digest(resolve(tiny()))
    assert reference["metrics"]["provenance"]["code_digest"] == want
    assert torch.load(reference["ckpt"] / "last.pt", weights_only=True)["code_digest"] == want  # (prev.pt: removed at the end)


# --------------------------------------------------------------------------- pins and stale runs
def _fake_results(root: Path, runs: dict) -> None:
    """results/cpu/runs/<id>/metrics.json for {id: (config, recorded code digest or None)}."""
    for rid, (cfg, digest) in runs.items():
        prov = {"config": cfg} | ({"code_digest": digest} if digest else {})
        p = root / "results" / "cpu" / "runs" / rid / "metrics.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({"run_id": rid, "provenance": prov}))


def _subprocess_cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "common.codehash", *args, "--root", str(root)], cwd=root,
                          env=env(), capture_output=True, text=True, timeout=120)


def test_pin_and_stale_cli(tmp_path, capsys):
    from common.codehash import main

    def _cli(root, *args):  # the CLI in-process (one real subprocess call below)
        capsys.readouterr()
        rc = main([*args, "--root", str(root)])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, rc, out, err)

    from common.codehash import code_digest

    root = _copy_code(tmp_path / "repo")
    cut = {"method": {"name": "cutmix"}, "dataset": {"name": "digits"}, "model": {"name": "resnet8"}}
    now_mixpro, now_cut = code_digest(MIXPRO, root), code_digest(cut, root)
    _fake_results(root, {"old-mixpro": (MIXPRO, None), "old-cut": (cut, None), "new-cut": (cut, now_cut),
                         "other-code": (MIXPRO, "0" * 16)})

    r = _subprocess_cli(root, "stale", "--scale", "cpu")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["old-cut", "old-mixpro", "other-code"]

    r = _cli(root, "pin", "--scale", "cpu", "old-cut")
    assert r.returncode == 0, r.stderr
    pins_file = root / "results" / "cpu" / "code_pins.json"
    assert json.loads(pins_file.read_text()) == {"old-cut": now_cut}
    assert _cli(root, "stale", "--scale", "cpu").stdout.split() == ["old-mixpro", "other-code"]

    r = _cli(root, "pin", "--scale", "cpu")  # default: every existing run
    assert r.returncode == 0, r.stderr
    text = pins_file.read_text()
    pins = json.loads(text)
    assert pins == {"old-mixpro": now_mixpro, "old-cut": now_cut, "new-cut": now_cut, "other-code": now_mixpro}
    assert list(pins) == sorted(pins) and text.endswith("\n")
    assert [p.name for p in pins_file.parent.iterdir() if p.name.endswith(".tmp")] == []
    assert _cli(root, "stale", "--scale", "cpu").stdout == ""

    _touch(root / "papers" / "mixpro" / "method.py")  # a change to MixPro's code: only its runs go stale
    assert _cli(root, "stale", "--scale", "cpu").stdout.split() == ["old-mixpro", "other-code"]

    r = _cli(root, "pin", "--scale", "cpu", "no-such-run")
    assert r.returncode == 2 and "no-such-run" in r.stderr and "Traceback" not in r.stderr
    assert json.loads(pins_file.read_text()) == pins  # unchanged


def test_stale_runs_function_for_the_workflow(tmp_path):
    from common.codehash import code_digest, stale_runs

    root = _copy_code(tmp_path / "repo")
    now = code_digest(MIXPRO, root)
    _fake_results(root, {"produced": (MIXPRO, now), "pinned": (MIXPRO, None), "unpinned": (MIXPRO, None),
                         "other": (MIXPRO, "f" * 16)})
    (root / "results" / "cpu" / "code_pins.json").write_text(json.dumps({"pinned": now, "other": "1" * 16}))
    bad = root / "results" / "cpu" / "runs" / "corrupt" / "metrics.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{ half a file")
    runs = {rid: MIXPRO for rid in ("produced", "pinned", "unpinned", "other", "corrupt", "not-run-yet")}
    assert stale_runs("cpu", root, runs) == ["corrupt", "other", "unpinned"]
    assert stale_runs("quick", root, runs) == []


def test_unreadable_pins_file_is_named(tmp_path):
    root = _copy_code(tmp_path / "repo")
    _fake_results(root, {"a": (MIXPRO, None)})
    (root / "results" / "cpu" / "code_pins.json").write_text("[1, 2]")
    r = _subprocess_cli(root, "stale", "--scale", "cpu")
    assert r.returncode == 2 and "code_pins.json" in r.stderr and "Traceback" not in r.stderr


def test_run_without_recorded_config_is_stale_and_cannot_be_pinned(tmp_path, capsys):
    from common.codehash import main

    root = _copy_code(tmp_path / "repo")
    _fake_results(root, {"ok": (MIXPRO, None)})
    broken = root / "results" / "cpu" / "runs" / "broken" / "metrics.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{}")
    assert main(["stale", "--scale", "cpu", "--root", str(root)]) == 0
    assert capsys.readouterr().out.split() == ["broken", "ok"]
    assert main(["pin", "--scale", "cpu", "--root", str(root), "broken"]) == 2
    assert "broken" in capsys.readouterr().err
    assert main(["pin", "--scale", "cpu", "--root", str(root)]) == 0
    assert list(json.loads((root / "results" / "cpu" / "code_pins.json").read_text())) == ["ok"]
    capsys.readouterr()
    assert main(["stale", "--scale", "cpu", "--root", str(root)]) == 0
    assert capsys.readouterr().out.split() == ["broken"]
