"""Run identity is stable: new config keys at their neutral default leave every run id unchanged
(the committed ``cpu`` runs and the ``quick`` grid), any other value gives a new id, and runtime-only
keys (``dataset.loader``) never change it. Also the ``zip:`` grid entries."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rel_helpers import ROOT, tiny

from common.config import (NEUTRAL_DEFAULTS, ConfigError, expand_grid, load_experiments, plan, resolve, run_id,
                           set_dotted, validate_run_config)

FIXTURES = ROOT / "tests" / "fixtures"


def _committed_cpu_run_ids() -> set[str]:
    out = subprocess.run(["git", "ls-files", "results/cpu/runs"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return {line.split("/")[3] for line in out.stdout.splitlines() if line.count("/") >= 4}


def test_cpu_run_ids_equal_the_committed_runs():
    runs, by_paper = plan("cpu", ROOT)
    committed = _committed_cpu_run_ids()
    assert committed, "no committed cpu runs found"
    new = {p: sorted(set(ids) - committed) for p, ids in by_paper.items() if set(ids) - committed}
    assert not new, (f"cpu runs planned but not committed: {new}. Run them with `snakemake --config scale=cpu "
                     f"papers='[{','.join(new)}]' data_root=...` and commit results/cpu and figures/cpu")
    assert committed <= set(runs), f"committed cpu runs no grid plans (renamed?): {sorted(committed - set(runs))}"


#: tests/fixtures/quick_run_ids/<paper>.txt: the quick run ids of a paper, written by the code before any
#: identity change; a paper without one (a new paper) is checked by _ids_in_a_fresh_interpreter instead
QUICK_IDS = FIXTURES / "quick_run_ids"
QUICK_PLAN = plan("quick", ROOT)[1]


def _ids_in_a_fresh_interpreter(papers: list[str]) -> dict[str, list[str]]:
    """Each paper's quick ids computed by another interpreter with another hash seed (ids must not depend on
    set or dict order, object addresses or the process)."""
    code = ("import json, sys; from common.config import plan; "
            "print(json.dumps(plan('quick', sys.argv[1], sys.argv[2:])[1]))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), *papers], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("paper", sorted(QUICK_PLAN))
def test_quick_run_ids_are_unchanged(paper):
    """A paper's quick ids equal its fixture (written before the new keys existed); a new paper without a
    fixture must at least get the same ids in every process (pin them by adding its fixture file)."""
    fixture = QUICK_IDS / f"{paper}.txt"
    if fixture.is_file():
        assert sorted(QUICK_PLAN[paper]) == fixture.read_text().split()
    else:
        assert _ids_in_a_fresh_interpreter([paper]) == {paper: QUICK_PLAN[paper]}


def test_every_quick_id_fixture_names_a_paper():
    """A fixture whose paper folder is gone is an error (its runs lost their pins): delete it with the paper."""
    assert {f.stem for f in QUICK_IDS.glob("*.txt")} <= set(QUICK_PLAN)


def test_every_committed_cpu_run_is_named_by_its_recorded_config():
    """The id the current code gives each committed run's recorded config is its directory name, so
    no change to the identity (e.g. the canonical numbers) renames a committed run."""
    committed = sorted((ROOT / "results" / "cpu" / "runs").glob("*/metrics.json"))
    assert len(committed) >= 200
    renamed = {m.parent.name: run_id(json.loads(m.read_text())["provenance"]["config"]) for m in committed}
    assert {k: v for k, v in renamed.items() if k != v} == {}


# --------------------------------------------------------------------------- canonical numbers
def _vit(**over) -> dict:
    cfg = tiny(model={"name": "vit", "patch_size": 2}, **over)
    return resolve(cfg)


@pytest.mark.parametrize("key,a,b", [
    ("method.alpha", 2, 2.0),  # a method parameter (Params: float)
    ("train.lr", 1, 1.0),  # a schema number
    ("train.warmup_epochs", 2, 2.0),  # a schema number whose default is written 0
    ("train.clip_grad_norm", 2, 2.0),  # a schema number without a numeric default
    ("model.mlp_ratio", 2, 2.0),  # a model keyword argument
    ("eval.occlusion.sizes", [1, 0.5], [1.0, 0.5]),  # numbers in a list
    ("dataset.transform", {"scale": [0, 1], "color_jitter": 0}, {"scale": [0.0, 1.0], "color_jitter": 0.0}),
    ("dataset.transform", {"color_jitter": [0, 1, 1]}, {"color_jitter": [0.0, 1.0, 1.0]}),  # anyOf: the list branch
    ("method", {"name": "mixup+dm", "dm": {"eta": 1}}, {"name": "mixup+dm", "dm": {"eta": 1.0}}),  # a loss term
])
def test_numerically_equal_configs_share_a_run_id(key, a, b):
    ida, idb = run_id(_vit(**{key: a})), run_id(_vit(**{key: b}))
    assert ida == idb
    assert ida != run_id(_vit())


def test_numerically_equal_dataset_options_share_a_run_id():
    base = {"dataset": {"name": "no2"}, "model": {"name": "mlp"}, "method": {"name": "erm"}}
    a = resolve(set_dotted(base, "dataset.options", {"train_frac": 1, "shuffle_seed": 2}))
    b = resolve(set_dotted(base, "dataset.options", {"train_frac": 1.0, "shuffle_seed": 2.0}))
    assert run_id(a) == run_id(b) != run_id(resolve(base))


def _respelled(x):
    """Every whole number written the other way (1 <-> 1.0); bools and the rest unchanged."""
    if isinstance(x, dict):
        return {k: _respelled(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_respelled(v) for v in x]
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not float(x).is_integer():
        return x
    return float(x) if isinstance(x, int) else int(x)


@pytest.mark.parametrize("scale", ["quick", "cpu"])
def test_respelling_whole_numbers_keeps_every_planned_run_id(scale):
    """Property over every run of the plan: writing each whole number the other way (``epochs: 15.0``,
    ``label_smoothing: 0``) changes no id (the identity reads numbers, not their spelling). The seed
    is kept: it names the run (``s1``) and ``seed: 1.0`` is rejected (test_config_inputs.py)."""
    runs, _ = plan(scale, ROOT)
    changed = {rid: run_id(_respelled(cfg) | {"seed": cfg["seed"]}) for rid, cfg in runs.items()}
    assert {k: v for k, v in changed.items() if k != v} == {}


def test_a_bool_is_not_the_number_one():
    assert run_id(_vit(**{"method.prob": True})) != run_id(_vit(**{"method.prob": 1}))


# a valid non-neutral value for every identity-neutral key
NON_NEUTRAL = {
    "dataset.transform": {"input_size": 8, "hflip": 0.5},
    "dataset.copy": "official",
    "train.repeated_aug": 3,
    "train.ema": {"decay": 0.99996},
    "train.amp_dtype": "bfloat16",
    "train.warmup_lr": 1e-6,
    "train.min_lr": 1e-5,
    "train.cooldown_epochs": 1,
    "train.lr_per": "epoch",
    "train.no_weight_decay": "timm",
    "train.shuffle": False,
    "train.lr_epoch_lag": 1,
}


def test_every_neutral_key_has_a_case_here():
    assert set(NON_NEUTRAL) == set(NEUTRAL_DEFAULTS)


@pytest.mark.parametrize("key", sorted(NEUTRAL_DEFAULTS))
def test_non_neutral_value_changes_the_run_id(key):
    base = resolve(tiny())
    neutral = set_dotted(base, key, NEUTRAL_DEFAULTS[key])
    changed = set_dotted(base, key, NON_NEUTRAL[key])
    validate_run_config(neutral, "neutral")
    validate_run_config(changed, "changed")
    assert run_id(neutral) == run_id(base)
    assert run_id(changed) != run_id(base)


@pytest.mark.parametrize("key,value", [("train.min_lr", 0), ("train.repeated_aug", 1), ("train.shuffle", True)])
def test_equal_spellings_of_the_neutral_value_keep_the_id(key, value):
    base = resolve(tiny())
    assert run_id(set_dotted(base, key, value)) == run_id(base)


def test_bool_is_not_the_neutral_number():
    base = resolve(tiny())
    assert run_id(set_dotted(base, "train.repeated_aug", True)) != run_id(base)


def test_ema_defaults_are_filled_so_equal_settings_share_an_id():
    a = resolve(tiny(**{"train.ema": {"decay": 0.999}}))
    b = resolve(tiny(**{"train.ema": {"decay": 0.999, "warmup": False, "every": 1}}))
    assert run_id(a) == run_id(b)
    assert run_id(a) != run_id(resolve(tiny(**{"train.ema": {"decay": 0.999, "every": 2}})))


@settings(max_examples=40, deadline=None)
@given(workers=st.one_of(st.none(), st.integers(0, 64)), pin=st.booleans(), persistent=st.booleans(),
       prefetch=st.integers(1, 16))
def test_dataset_loader_never_changes_the_run_id(workers, pin, persistent, prefetch):
    base = resolve(tiny())
    cfg = resolve(tiny(**{"dataset.loader": {"workers": workers, "pin_memory": pin,
                                             "persistent_workers": persistent, "prefetch_factor": prefetch}}))
    validate_run_config(cfg, "loader")
    assert run_id(cfg) == run_id(base)


@pytest.mark.parametrize("key,value,expect", [
    ("dataset.transform", {"hflip": 1.5}, ["'dataset.transform.hflip'", "maximum=1"]),
    ("dataset.transform", {"re_mode": "constant"}, ["'dataset.transform.re_mode'", "const"]),
    ("dataset.transform", {"scale": [0.08]}, ["'dataset.transform.scale'"]),
    ("dataset.transform", {"hlfip": 0.5}, ["'dataset.transform.hlfip'", "Did you mean 'hflip'"]),
    ("dataset.transform", {"color_jitter": [0.4, 0.4]}, ["'dataset.transform.color_jitter'"]),
    ("dataset.loader", {"workers": -1}, ["'dataset.loader.workers'"]),
    ("train.repeated_aug", 0, ["'train.repeated_aug'", "minimum=1"]),
    ("train.ema", {"decay": 1.0}, ["'train.ema.decay'", "exclusiveMaximum=1"]),
    ("train.ema", {"every": 2}, ["'train.ema'", "decay"]),
    ("train.amp_dtype", "fp16", ["'train.amp_dtype'", "bfloat16"]),
    ("train.warmup_lr", -1.0, ["'train.warmup_lr'"]),
    ("train.min_lr", -1e-5, ["'train.min_lr'"]),
    ("train.cooldown_epochs", -1, ["'train.cooldown_epochs'"]),
    ("train.lr_per", "batch", ["'train.lr_per'", "epoch"]),
    ("train.no_weight_decay", "all", ["'train.no_weight_decay'", "timm"]),
    ("train.select", "best_acc", ["'train.select'", "best_val_acc"]),
    ("train.shuffle", "no", ["'train.shuffle'", "boolean"]),
])
def test_new_keys_are_range_checked(key, value, expect):
    cfg = resolve(set_dotted(tiny(), key, value))
    with pytest.raises(ConfigError) as e:
        validate_run_config(cfg, "the.yaml")
    msg = str(e.value)
    assert "the.yaml" in msg
    for s in expect:
        assert s in msg, f"{s!r} missing from: {msg}"


# --------------------------------------------------------------------------- zip: in grids
def _experiments(tmp_path, entry):
    import yaml

    doc = {"paper": "toy", "scales": {"quick": {"defaults": {"dataset": {"name": "digits"}}, "grid": [
        {"vary": {"method": ["erm"]}}, entry]}}}
    p = tmp_path / "papers" / "toy" / "experiments.yaml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(doc))
    return p


def test_zip_varies_keys_together_times_vary(tmp_path):
    p = _experiments(tmp_path, {"vary": {"method": ["erm", "mixup"]},
                                "zip": {"seed": [0, 1, 2], "dataset.split_seed": [5, 6, 7]}})
    runs = expand_grid(load_experiments(p), "quick", str(p))[1:]
    got = sorted((c["method"]["name"], c["seed"], c["dataset"]["split_seed"]) for c in runs)
    assert got == sorted((m, s, s + 5) for m in ("erm", "mixup") for s in (0, 1, 2))


@pytest.mark.parametrize("zipped,expect", [
    ({"seed": [0, 1, 2], "dataset.split_seed": [0, 1]}, ["grid[1].zip", "equal length", "seed: 3", "dataset.split_seed: 2"]),
    ({"seed": []}, ["grid[1].zip.seed", "non-empty list"]),
    ({"seed": 3}, ["grid[1].zip.seed", "non-empty list"]),
    ({"method": ["erm"]}, ["grid[1]", "'method'", "both vary and zip"]),
])
def test_bad_zip_names_file_and_grid_index(tmp_path, zipped, expect):
    p = _experiments(tmp_path, {"vary": {"method": ["erm", "mixup"]}, "zip": copy.deepcopy(zipped)})
    with pytest.raises(ConfigError) as e:
        expand_grid(load_experiments(p), "quick", str(p))
    msg = str(e.value)
    assert str(p) in msg
    for s in expect:
        assert s in msg, f"{s!r} missing from: {msg}"
