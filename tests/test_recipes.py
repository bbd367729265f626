"""The `paper`-scale configs are the authors' recipes: every resolved config is pinned to the official
values in papers/<paper>/recipe.yaml (file and line of the official code, or the paper's section),
the committed RECIPE.md cards are up to date, and every listed difference carries its reason."""
from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from common import recipe as R
from common.config import ConfigError, load_experiments, plan

ROOT = Path(__file__).resolve().parents[1]
RUNS, BY_PAPER = plan("paper", ROOT)
PAPERS = sorted(p for p, ids in BY_PAPER.items() if ids)


def paper_runs(paper: str) -> dict:
    return {rid: RUNS[rid] for rid in BY_PAPER[paper]}


def test_a_paper_grid_has_a_recipe_and_a_recipe_a_paper_grid():
    """The paper scale and its card are optional (a method may have none), but a paper grid needs its
    recipe.yaml and a recipe.yaml pins a paper grid."""
    with_recipe = {p.parent.name for p in (ROOT / "papers").glob(f"*/{R.RECIPE_FILE}")}
    assert not set(PAPERS) - with_recipe, f"paper grids without papers/<paper>/{R.RECIPE_FILE}"
    assert not with_recipe - set(PAPERS), f"{R.RECIPE_FILE} without a paper grid in experiments.yaml"


@pytest.mark.parametrize("paper", PAPERS)
def test_resolved_paper_configs_match_the_official_recipe(paper):
    rec = R.load_recipe(paper, ROOT)
    exp = load_experiments(ROOT / "papers" / paper / "experiments.yaml")
    problems = R.check(paper, rec, paper_runs(paper), exp)
    assert not problems, "resolved paper configs drift from recipe.yaml:\n" + "\n".join(problems)


@pytest.mark.parametrize("paper", PAPERS)
def test_recipe_card_is_up_to_date(paper):
    _, _, _, text = R.build(paper, ROOT, RUNS, BY_PAPER)
    committed = (ROOT / "papers" / paper / R.CARD_FILE).read_text()
    assert committed == text, f"papers/{paper}/RECIPE.md is out of date: run `python -m common.recipe --paper {paper}`"


@pytest.mark.parametrize("paper", PAPERS)
def test_every_difference_has_a_reason_and_every_value_a_source(paper):
    raw = yaml.safe_load(R.recipe_path(paper, ROOT).read_text())
    for s in raw["settings"]:
        for d in s.get("differences") or []:
            assert isinstance(d.get("reason"), str) and len(d["reason"].split()) >= 5, (paper, s["id"], d)
        for v in s["values"]:
            assert v["source"].strip(), (paper, s["id"], v["key"])


@pytest.mark.parametrize("paper", PAPERS)
def test_paper_readme_links_the_card(paper):
    """The README has a working link to the card: a Markdown link whose target, read relative to the README,
    is this paper's RECIPE.md (a mention in prose, or a link to a moved or other card, does not count)."""
    readme = ROOT / "papers" / paper / "README.md"
    card = (ROOT / "papers" / paper / R.CARD_FILE).resolve()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme.read_text())
    assert card in {(readme.parent / t).resolve() for t in targets}, f"{readme} has no link to {card}"


@pytest.mark.parametrize("paper", PAPERS)
def test_paper_only_claims_compare_arms_that_are_run(paper):
    exp = load_experiments(ROOT / "papers" / paper / "experiments.yaml")
    runs = paper_runs(paper)
    for c in exp.get("claims") or []:
        if c.get("scales") == ["paper"]:
            assert R.claim_applies(c, runs), f"{paper}: claim {c['id']!r}: no paper run has both {c['method']!r} and {c['baseline']!r}"


# --------------------------------------------------------------------------- the checker can fail
def _cutmix():
    rec = R.load_recipe("cutmix", ROOT)
    exp = load_experiments(ROOT / "papers" / "cutmix" / "experiments.yaml")
    return rec, paper_runs("cutmix"), exp


def test_a_drifted_value_is_reported_with_paper_setting_key_values_and_source():
    rec, runs, exp = _cutmix()
    runs = copy.deepcopy(runs)
    rid = next(r for r, c in runs.items() if c["dataset"]["name"] == "cifar100")
    runs[rid]["train"]["lr"] = 0.1
    problems = R.check("cutmix", rec, runs, exp)
    assert len(problems) == 1
    msg = problems[0]
    for part in ("cutmix", "cifar100_pyramidnet200", "train.lr", "ours 0.1", "official 0.25", "README L51", rid):
        assert part in msg, (part, msg)


def test_a_difference_that_now_matches_is_stale():
    rec, runs, exp = _cutmix()
    rec = copy.deepcopy(rec)
    s = rec["settings"][0]
    entry = next(v for v in s["values"] if v["key"] == "train.lr")
    s["values"].remove(entry)
    s.setdefault("differences", []).append({**entry, "reason": "pretend we differ on purpose here"})
    problems = R.check("cutmix", rec, runs, exp)
    assert len(problems) == 1 and "train.lr" in problems[0] and "remove the difference" in problems[0]


def test_uncovered_runs_and_empty_settings_are_reported():
    rec, runs, exp = _cutmix()
    rec = copy.deepcopy(rec)
    rec["settings"] = [s for s in rec["settings"] if s["id"] != "imagenet_resnet50"]
    rec["settings"].append({"id": "nothing", "title": "t", "match": {"dataset.name": "svhn"}, "values": []})
    problems = R.check("cutmix", rec, runs, exp)
    n_imagenet = sum(c["dataset"]["name"] == "imagenet" for c in runs.values())
    assert sum("covered by no setting" in p for p in problems) == n_imagenet == 3
    assert any("'nothing' matches no paper-scale run" in p for p in problems)


def test_a_claim_with_the_wrong_statistic_is_reported():
    rec, runs, exp = _cutmix()
    exp = copy.deepcopy(exp)
    claim = next(c for c in exp["claims"] if c["id"] == "cutmix_beats_erm_imagenet")
    claim["statistic"] = "last"
    problems = R.check("cutmix", rec, runs, exp)
    assert len(problems) == 1 and "cutmix_beats_erm_imagenet" in problems[0] and "best_epoch" in problems[0]


def test_value_entries_with_when_only_see_their_runs():
    rec, runs, exp = _cutmix()
    s = rec["settings"][0]
    rows = {(r["key"], str(r["when"])): r for r in R.rows(s, runs)}
    cut = rows[("method.prob", "{'method.name': 'cutmix'}")]
    assert cut["ours"] == [0.5] and len(cut["runs"]) == 3 and cut["status"] == "matches"


# --------------------------------------------------------------------------- file errors and the CLI
def _tree(tmp_path: Path, paper="cutmix") -> Path:
    dst = tmp_path / "papers" / paper
    dst.mkdir(parents=True)
    for f in ("experiments.yaml", R.RECIPE_FILE, R.CARD_FILE):
        shutil.copy(ROOT / "papers" / paper / f, dst / f)
    return tmp_path


def test_a_difference_without_reason_is_a_clear_error(tmp_path):
    root = _tree(tmp_path)
    path = root / "papers" / "cutmix" / R.RECIPE_FILE
    raw = yaml.safe_load(path.read_text())
    raw["settings"][0]["differences"][0].pop("reason")
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"recipe\.yaml.*settings\.0\.differences\.0"):
        R.load_recipe("cutmix", root)


def test_missing_recipe_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"papers/cutmix/recipe\.yaml: missing"):
        R.load_recipe("cutmix", tmp_path)


def test_check_cli_fails_with_a_diff_on_a_stale_card_and_write_repairs_it(tmp_path, capsys):
    root = _tree(tmp_path)
    card = root / "papers" / "cutmix" / R.CARD_FILE
    good = card.read_text()
    card.write_text(good.replace("matches", "MATCHES", 1))
    assert R.main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "-" in err and "+" in err and "out of date" in err and "RECIPE.md" in err
    assert card.read_text() != good  # --check never writes
    assert R.main(["--root", str(root)]) == 0
    assert card.read_text() == good
    assert not list(card.parent.glob("*.tmp"))
    assert R.main(["--check", "--root", str(root)]) == 0


def test_check_cli_exits_nonzero_on_drift(tmp_path, capsys):
    root = _tree(tmp_path)
    exp = root / "papers" / "cutmix" / "experiments.yaml"
    exp.write_text(exp.read_text().replace("lr: 0.25", "lr: 0.2"))
    assert R.main(["--check", "--root", str(root)]) == 1
    assert "train.lr" in capsys.readouterr().err


def test_unknown_paper_is_a_clear_error(tmp_path, capsys):
    root = _tree(tmp_path)
    assert R.main(["--paper", "nosuch", "--root", str(root)]) == 2
    assert "nosuch" in capsys.readouterr().err


# --------------------------------------------------------------------------- value comparison
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_same_is_reflexive_for_floats_and_ints_equal_floats(x):
    assert R.same(x, x)
    assert R.same([x, {"a": x}], [x, {"a": x}])
    if x.is_integer() and abs(x) < 2**53:
        assert R.same(int(x), x)


def test_same_distinguishes_bools_none_and_lengths():
    assert not R.same(True, 1) and not R.same(False, 0) and not R.same(None, 0)
    assert not R.same([1, 2], [1, 2, 3]) and not R.same({"a": 1}, {"a": 1, "b": 2})
    assert R.same(1.0e-3, 0.001) and not R.same(1.0e-3, 1.1e-3)
    assert R.matches({"model": {"name": "x"}}, {"model.patch_size": None})  # unset key counts as null


# --------------------------------------------------------------------------- mixup's PreAct ResNet-18
def test_preact_resnet18_is_the_official_size_and_shape():
    import torch

    from common.models import build_model
    from common.registry import load_plugins

    load_plugins()
    m = build_model({"name": "preact_resnet18"}, 10, (3, 32, 32))
    assert sum(p.numel() for p in m.parameters()) == 11_171_274  # mixup-cifar10 ResNet18(): 11.17 M
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    first = m.layers[0]
    assert first.short is None and isinstance(first.bn1, torch.nn.BatchNorm2d)  # BN before the first conv
    assert m.layers[2].short is not None and m.layers[2].short.stride == (2, 2)


# --------------------------------------------------------------------------- model init options
def _model(spec: dict, shape=(3, 32, 32), classes=100, seed=0):
    import torch

    from common.models import build_model
    from common.registry import load_plugins

    load_plugins()
    torch.manual_seed(seed)
    return build_model(dict(spec), classes, shape)


def _conv_std(conv) -> tuple[float, float]:
    """(measured std of the conv's weights, He-normal fan-out std, PyTorch's default std)."""
    k = conv.kernel_size[0] * conv.kernel_size[1]
    fan_out, fan_in = k * conv.out_channels, k * conv.in_channels // conv.groups
    return float(conv.weight.detach().std()), (2.0 / fan_out) ** 0.5, (1.0 / (3.0 * fan_in)) ** 0.5


@pytest.mark.parametrize("spec, conv, expect", [
    ({"name": "resnet18_cifar", "init": "kaiming_fan_out"}, lambda m: m.layers[2].conv2, "he"),
    ({"name": "resnet18_cifar", "init": "torch_default"}, lambda m: m.layers[2].conv2, "torch"),
    ({"name": "resnext50_cifar", "init": "torch_default"}, lambda m: m.layer2[1].conv2, "torch"),
    ({"name": "resnext50_cifar", "init": "kaiming_fan_out"}, lambda m: m.layer2[1].conv2, "he"),
    ({"name": "resnet50_tiny", "init": "kaiming_fan_out"}, lambda m: m.layers[4].conv2, "he"),
    ({"name": "resnet50_cifar", "init": "torch_default"}, lambda m: m.layers[4].conv2, "torch"),
])
def test_model_init_draws_the_named_scheme(spec, conv, expect):
    shape = (3, 64, 64) if "tiny" in spec["name"] else (3, 32, 32)
    got, he, torch_default = _conv_std(conv(_model(spec, shape)))
    assert abs(he / torch_default - 1) > 0.5  # the two schemes are far apart for these layers
    assert got == pytest.approx(he if expect == "he" else torch_default, rel=0.05)


def test_model_init_defaults_are_each_models_former_behaviour():
    """The neutral defaults: the CIFAR ResNets draw He fan-out (as before the option), RankMixup's
    bottleneck ResNets PyTorch's init, resnext50_cifar timm's init (zeroed last BN of each block)."""
    import torch

    def same(a, b):
        return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

    assert same(_model({"name": "resnet20"}), _model({"name": "resnet20", "init": "kaiming_fan_out"}))
    assert same(_model({"name": "resnet18_cifar"}), _model({"name": "resnet18_cifar", "init": "kaiming_fan_out"}))
    assert same(_model({"name": "resnet50_cifar"}), _model({"name": "resnet50_cifar", "init": "torch_default"}))
    timm_init = _model({"name": "resnext50_cifar"})
    assert float(timm_init.layer1[0].bn3.weight.detach().abs().sum()) == 0.0
    assert float(_model({"name": "resnext50_cifar", "init": "torch_default"}).layer1[0].bn3.weight.detach().min()) == 1.0


@pytest.mark.parametrize("model, msg", [
    ({"name": "resnet18_cifar", "init": "timm"}, r"model\.init'='timm' is not allowed here; choose one of 'torch_default', 'kaiming_fan_out'"),
    ({"name": "resnext50_cifar", "init": "he"}, r"model\.init'='he' is not allowed here; choose one of 'timm'"),
    ({"name": "timm:deit_tiny_patch16_224", "cls_token_std": -0.02}, r"model\.cls_token_std"),
])
def test_bad_init_values_fail_before_any_job(model, msg):
    from common.config import resolve, validate_run_config

    with pytest.raises(ConfigError, match=msg):
        validate_run_config(resolve({"dataset": {"name": "cifar100"}, "model": model}), "grid")


def test_cls_token_std_redraws_the_class_token_as_timm_0_5_did():
    import torch

    timm1 = _model({"name": "timm:deit_tiny_patch16_224"}, (3, 224, 224), 1000)
    old = _model({"name": "timm:deit_tiny_patch16_224", "cls_token_std": 0.02}, (3, 224, 224), 1000)
    assert float(timm1.cls_token.detach().std()) < 1e-5  # timm 1.0's own init
    assert float(old.cls_token.detach().std()) == pytest.approx(0.02, rel=0.15)  # 192 draws
    rest = [k for k in timm1.state_dict() if k != "cls_token"]
    assert all(torch.equal(timm1.state_dict()[k], old.state_dict()[k]) for k in rest)  # only the token changes
    small = _model({"name": "vit", "patch_size": 4, "embed_dim": 96, "cls_token_std": 0.02}, (3, 32, 32), 10)
    assert float(small.cls_token.detach().std()) == pytest.approx(0.02, rel=0.3)
    with pytest.raises(ConfigError, match="has no class token"):
        _model({"name": "timm:resnet18", "cls_token_std": 0.02}, (3, 32, 32), 10)


@pytest.mark.parametrize("paper", ["decoupled_mixup", "resizemix"])
def test_openmixup_cifar100_runs_reflect_pad_in_memory_images(paper):
    """The CIFAR-100 grids of the openmixup protocol take the per-sample pipeline with reflect padding."""
    from common.transforms import build_transform, describe

    for cfg in paper_runs(paper).values():
        if cfg["dataset"]["name"] != "cifar100":
            continue
        steps = describe(build_transform(cfg["dataset"]["transform"], 32, (0.5,) * 3, (0.25,) * 3, True))
        assert steps[0] == ("RandomCrop", {"size": (32, 32), "padding": 4, "padding_mode": "reflect"})
        assert steps[1] == ("RandomHorizontalFlip", {"p": 0.5})


# --------------------------------------------------------------------------- memory per GPU
def test_a_gpu_run_without_memory_or_a_setting_without_its_source_is_reported():
    rec, runs, exp = _cutmix()
    runs = copy.deepcopy(runs)
    rid = next(r for r, c in runs.items() if c["dataset"]["name"] == "imagenet")
    del runs[rid]["resources"]["gpu_mem_gb"]
    rec = copy.deepcopy(rec)
    del rec["settings"][0]["gpu_memory"]
    problems = R.check("cutmix", rec, runs, exp)
    n_cifar = sum(c["dataset"]["name"] == "cifar100" for c in runs.values())
    assert len(problems) == 1 + n_cifar, problems
    assert any(rid in p and "states no resources.gpu_mem_gb" in p for p in problems)
    assert sum("gpu_memory.source" in p for p in problems) == n_cifar == 9


def test_every_paper_gpu_run_states_its_memory_per_gpu():
    for rid, cfg in RUNS.items():
        if cfg["resources"]["gpus"]:
            assert cfg["resources"].get("gpu_mem_gb"), rid


def test_stated_memory_is_the_estimate_for_a_cifar_resnext50_run():
    """resources.gpu_mem_gb of the openmixup ResNeXt-50 CIFAR-100 runs is what benchmarks.gpu_memory
    estimates for them (its method: saved-for-backward bytes per sample x batch + weights, gradients,
    optimiser state, x the published-figure margin)."""
    import sys

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks.gpu_memory import estimate

    cfg = next(c for c in paper_runs("decoupled_mixup").values()
               if c["method"]["name"] == "erm" and c["model"]["name"] == "resnext50_cifar" and c["dataset"]["name"] == "cifar100")
    got = estimate(cfg)
    assert got["per_gpu_batch"] == 100 and got["static_gb"] > 0 and got["activations_gb"] > got["static_gb"]
    assert cfg["resources"]["gpu_mem_gb"] == got["gpu_mem_gb"]
