"""Paper-scale recipes proven on CPU without their data or a GPU.

Every distinct resolved ``paper`` config of every paper (discovered, not listed) is checked
against what it says, then trained for 2 optimisation steps on a tiny synthetic stand-in of its
dataset (AMP is off on CPU):

* the train/eval transform lists built from ``dataset.transform`` (class names and key params);
* the sampler: RepeatAugSampler with ``train.repeated_aug > 1``, DistributedSampler under DDP
  (world = gpus x nodes, passed explicitly), the seeded single-process sampler otherwise;
* the EMA update rule with the config's decay;
* the lr at the warmup boundaries and the end of the schedule (timm's CosineLRScheduler where the
  config uses the timm rule);
* the run itself: finite loss, the lr the schedule gives, and the statistic fields metrics.json
  and epochs.jsonl must carry (test, best_epoch_test, last_epoch, selected_epoch; test_ema and
  per-epoch test_*_ema with EMA).

Stand-ins: imagenet / tiny_imagenet -> a temporary ImageFolder (tiny: its own layout) of a few
generated JPEGs; in-memory image datasets -> ``random`` tensors of the dataset's image size; tabular
and time-series datasets -> the real loader on a few samples (skipped when the data is absent).
Models are shrunk through their kwargs (timm ViTs to depth 1 and width 32, timm ResNets to one
block per stage, the CIFAR nets to narrow widths); the train image size is reduced where the
recipe's 224 px would only cost time (the transform checks use the config's own size).
"""
from __future__ import annotations

import copy
import inspect
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from common.config import identity, plan, resolve
from common.data import dataset_info
from common.data import DATASETS
from common.loader import SeededSampler, make_sampler
from common.optim import build_ema, lr_at, timm_lr, total_epochs
from common.train import train
from common.transforms import build_transform, describe, resolve_transform

ROOT = Path(__file__).resolve().parents[1]


def _distinct_paper_configs() -> dict[str, dict]:
    runs, _ = plan("paper", ROOT)
    out = {}
    for rid, cfg in runs.items():
        key = copy.deepcopy(identity(cfg))
        key.pop("seed", None)
        key["dataset"].pop("split_seed", None)
        (key["dataset"].get("options") or {}).pop("shuffle_seed", None)
        k = json.dumps(key, sort_keys=True, default=str)
        out.setdefault(k, (rid, cfg))
    return {rid: cfg for rid, cfg in out.values()}


CONFIGS = _distinct_paper_configs()


# --------------------------------------------------------------------------- stand-ins
def _file_based(name: str) -> bool:
    return DATASETS.get(name).__module__ == "common.loader"


def _write_jpegs(root: Path, layout: str, size: int, classes=("n01", "n02"), per_class=3, n_val=1) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)

    def save(path: Path, hw):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(path, quality=85)

    if layout == "tiny_imagenet":
        base = root / "tiny_imagenet" / "tiny-imagenet-200"
        base.mkdir(parents=True, exist_ok=True)
        (base / "wnids.txt").write_text("\n".join(classes) + "\n")
        ann = []
        for c in classes:
            for i in range(per_class):
                save(base / "train" / c / "images" / f"{c}_{i}.JPEG", (size, size))
            for i in range(n_val):
                save(base / "val" / "images" / f"val_{c}_{i}.JPEG", (size, size))
                ann.append(f"val_{c}_{i}.JPEG\t{c}\t0\t0\t1\t1")
        (base / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")
    else:
        for split, n in (("train", per_class), ("val", n_val)):
            for c in classes:
                for i in range(n):
                    save(root / layout / split / c / f"{i}.JPEG", (size + 7, size + 13))
    return root


@pytest.fixture(scope="module")
def jpeg_roots(tmp_path_factory):
    made = {}

    def get(layout: str, size: int) -> Path:
        if (layout, size) not in made:
            made[(layout, size)] = _write_jpegs(tmp_path_factory.mktemp(f"{layout}{size}"), layout, size)
        return made[(layout, size)]

    return get


def _patch_sizes(cfg) -> list[int]:
    sizes = []
    m = cfg["model"]
    if "patch_size" in m:
        sizes.append(int(m["patch_size"]))
    elif m["name"].startswith("timm:") and "patch" in m["name"]:
        sizes.append(int(m["name"].split("patch")[1].split("_")[0]))
    for k, v in cfg["method"].items():
        if isinstance(v, int) and not isinstance(v, bool) and ("cell" in k or "patch" in k):
            sizes.append(int(v))
    return sizes


def _standin_size(cfg, default: int) -> int:
    sizes = _patch_sizes(cfg)
    if not sizes:
        return default
    s = math.lcm(*sizes)
    return s if s >= 2 * min(sizes) else 2 * s


SIZE_KWARGS = {"width": 8, "base_width": 4, "hid_cnn": 8, "hid_rnn": 8, "hidden": [16, 16]}


def _shrinkable(cfg) -> bool:
    name = cfg["model"]["name"]
    if name.startswith("timm:"):
        return any(k in name for k in ("deit", "vit", "resnet"))
    from common.models import MODELS

    return name == "pyramidnet" or bool(set(SIZE_KWARGS) & set(inspect.signature(MODELS.get(name)).parameters))


def _shrink_model(cfg, size: int) -> dict:
    m = dict(cfg["model"])
    name = m["name"]
    if name.startswith("timm:") and ("deit" in name or "vit" in name):
        m.update(depth=1, embed_dim=32, num_heads=2, img_size=size)
    elif name.startswith("timm:") and "resnet" in name:
        m.update(layers=[1, 1, 1, 1])
    else:
        from common.models import MODELS

        params = inspect.signature(MODELS.get(name)).parameters
        for k, v in SIZE_KWARGS.items():
            if k in params:
                m[k] = v
        if name == "pyramidnet":  # bottleneck PyramidNet depth must be 9n+2
            m.update(depth=11, alpha=12)
    return m


def standin(cfg: dict, jpeg_roots) -> dict:
    """A copy of ``cfg`` that trains 2 steps in seconds on CPU, keeping the recipe's rule keys."""
    c = copy.deepcopy(cfg)
    d, t = c["dataset"], c["train"]
    name = d["name"]
    factory = DATASETS.get(name)
    spec = d.get("transform")
    bs = 2
    if _file_based(name):
        size = _standin_size(cfg, 32)
        d["root"] = str(jpeg_roots(name, 64 if name == "tiny_imagenet" else size))
        d["download"] = False
        if spec is not None:
            d["transform"] = {**spec, "input_size": size}
        elif name == "imagenet":
            d["options"] = {**(d.get("options") or {}), "image_size": size, "resize": size + 4}
        n_train = 6
    elif dataset_info(name).image_size:
        size = _standin_size(cfg, int(dataset_info(name).image_size))
        d.clear()
        d.update(name="random", val_size=cfg["dataset"].get("val_size") and 4, transform=spec,
                 options={"num_classes": 10, "image_size": size, "n_train": 4 + 4, "n_test": 4,
                          "channels": 1 if size == 28 else 3})
        n_train = 4
    else:  # tabular / time series: the real loader, few samples
        size = None
        d["train_size"], d["test_size"] = 4, 8
        if d.get("val_size"):
            d["val_size"] = 4
        n_train = 4
    if d.get("val_size") and _file_based(name):
        d["val_size"] = 2
    d["loader"] = {"workers": 0}
    c["model"] = _shrink_model(cfg, size or 32)
    # 2 steps per epoch; a second epoch only where the recipe warms up (the warmup must end before training)
    t.update(batch_size=bs, epochs=2 if cfg["train"]["warmup_epochs"] else 1, num_threads=1, amp=False)
    t["milestones"] = [t["epochs"]] if t["schedule"] == "step" else []
    t["warmup_epochs"] = 1 if cfg["train"]["warmup_epochs"] else 0
    t["cooldown_epochs"] = min(1, int(cfg["train"].get("cooldown_epochs") or 0))
    if t.get("repeated_aug", 1) > 1:
        t["batch_size"] = int(t["repeated_aug"])  # one index, its copies in one batch
    c["eval"]["batch_size"] = 4
    c["resources"] = {**c["resources"], "gpus": 0, "nodes": 1, "cpus": 1}
    assert n_train >= 2 * bs or d.get("val_size")
    return resolve(c)


# --------------------------------------------------------------------------- checks without training
def _expected_train_names(c: dict) -> list[str]:
    first = ["RandomCrop"] if (c["reflect_pad"] or c["random_crop_only"]) else ["RandomResizedCropAndInterpolation"]
    flips = (["RandomHorizontalFlip"] if c["hflip"] > 0 else []) + (["RandomVerticalFlip"] if c["vflip"] > 0 else [])
    middle = []
    if c["auto_augment"]:
        aa = str(c["auto_augment"])
        middle = ["RandAugment" if aa.startswith("rand") else "AugMixAugment" if aa.startswith("augmix")
                  else "AutoAugment"]
    elif c["color_jitter"] not in (None, 0):
        middle = ["ColorJitter"]
    last = ["MaybeToTensor"] + (["Lighting"] if c["lighting"] else []) + ["Normalize"]
    if c["re_prob"] > 0:
        last.append("RandomErasing")
    return first + flips + middle + last


@pytest.mark.parametrize("rid", sorted(CONFIGS))
def test_recipe_pieces(rid):
    cfg = CONFIGS[rid]
    t = cfg["train"]
    spec = cfg["dataset"].get("transform")
    # transforms: what dataset.transform says, in timm's order with our extras in place
    if spec is not None:
        size = dataset_info(cfg["dataset"]["name"]).image_size or 224
        c = resolve_transform(spec, size)
        tf = build_transform(spec, size, (0.5,) * 3, (0.25,) * 3, train=True)
        steps = describe(tf)
        assert [n for n, _ in steps] == _expected_train_names(c), rid
        crop = steps[0][1]
        assert crop["size"] == (c["input_size"], c["input_size"])
        if steps[0][0] == "RandomResizedCropAndInterpolation":
            assert crop["scale"] == tuple(round(v, 4) for v in c["scale"])
            if c["interpolation"] == "random":  # timm draws bilinear or bicubic per image
                assert {str(m.value) for m in crop["interpolation"]} == {"bilinear", "bicubic"}
            else:
                assert crop["interpolation"] == c["interpolation"]
        else:
            assert crop["padding_mode"] == "reflect" and (crop["padding"] or 0) == c["reflect_pad"]
        p = dict(steps)
        if "Lighting" in p:
            assert p["Lighting"]["std"] == c["lighting"]
        if "RandomErasing" in p:
            assert p["RandomErasing"]["probability"] == c["re_prob"] and p["RandomErasing"]["mode"] == c["re_mode"]
        ev = describe(build_transform(spec, size, (0.5,) * 3, (0.25,) * 3, train=False))
        assert [n for n, _ in ev][-2:] == ["MaybeToTensor", "Normalize"] and dict(ev)["CenterCrop"]["size"] == \
            (c["input_size"], c["input_size"])
    # sampler at the paper's world size (rank 0, no process group needed)
    world = int(cfg["resources"]["gpus"] or 1) * int(cfg["resources"]["nodes"] or 1)
    reps = int(t.get("repeated_aug") or 1)
    s = make_sampler(4096, int(cfg["seed"]), bool(t.get("shuffle", True)), world, 0, reps)
    want = "RepeatAugSampler" if reps > 1 else "DistributedSampler" if world > 1 else "SeededSampler"
    assert type(s).__name__ == want
    # EMA: ema <- decay * ema + (1 - decay) * param
    if t.get("ema"):
        torch.manual_seed(0)
        lin = torch.nn.Linear(3, 2)
        ema = build_ema(lin, t["ema"])
        old = ema.module.weight.detach().clone()
        with torch.no_grad():
            lin.weight.add_(1.0)
        ema.update(lin)
        dec = float(t["ema"]["decay"])
        assert torch.allclose(ema.module.weight, dec * old + (1 - dec) * lin.weight, atol=1e-6)
    # lr at the warmup boundaries and the end, with a nominal 10 steps per epoch
    spe = 10
    end = total_epochs(t) * spe - 1
    warm_epochs = int(round(t["warmup_epochs"]))
    if t.get("warmup_lr") is not None or t.get("lr_per") == "epoch":
        if t["schedule"] == "cosine":
            per_epoch = t.get("lr_per") == "epoch"
            unit = 1 if per_epoch else spe
            w_lr = t["lr"] if t.get("warmup_lr") is None else t["warmup_lr"]
            lag = int(t.get("lr_epoch_lag") or 0) * spe  # DeiT: epoch e trains at the schedule's lr(e - 1)
            for step in {0, max(0, warm_epochs * spe - 1), warm_epochs * spe, end}:
                now = max(0, step - lag) // spe if per_epoch else max(0, step - lag)
                want_lr = timm_lr(now, t["epochs"] * unit, warm_epochs * unit, t["lr"], w_lr, t.get("min_lr") or 0.0)
                assert lr_at(step, spe, t) == pytest.approx(want_lr, rel=1e-12), (rid, step)
            if t.get("warmup_lr") is not None and warm_epochs:
                assert lr_at(0, spe, t) == pytest.approx(t["warmup_lr"])
    elif warm_epochs:
        assert lr_at(0, spe, t) == pytest.approx(t["lr"] / (warm_epochs * spe))
        assert lr_at(warm_epochs * spe - 1, spe, t) == pytest.approx(t["lr"])
    if t["schedule"] == "step" and t["milestones"]:
        m = t["milestones"][0]
        assert lr_at(m * spe, spe, t) == pytest.approx(lr_at(m * spe - 1, spe, t) * t["gamma"])
    if t["schedule"] == "cosine" and not t.get("cooldown_epochs"):
        assert lr_at(end, spe, t) <= 0.01 * t["lr"] + (t.get("min_lr") or 0.0)


# --------------------------------------------------------------------------- 2 steps on a stand-in
def _training_set() -> list[str]:
    """One config per (dataset, model, method, transform, rule keys): configs that differ only in
    numeric method parameters or schedule lengths run the same code path. Models that cannot be
    shrunk through their kwargs (ResNeXt-50) train once per dataset, not once per method."""
    seen, out = set(), []
    for rid in sorted(CONFIGS):
        c = CONFIGS[rid]
        t = c["train"]
        method = c["method"]["name"] if _shrinkable(c) else "-"
        key = json.dumps([c["dataset"]["name"], c["model"]["name"], method, c["dataset"].get("transform"),
                          t["optimizer"], t["schedule"], t["select"], bool(t.get("ema")), t.get("repeated_aug"),
                          t.get("lr_per"), t.get("warmup_lr") is None, t.get("no_weight_decay"), t.get("shuffle")],
                         sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(rid)
    return out


@pytest.mark.parametrize("rid", _training_set())
def test_two_steps_on_a_standin(rid, tmp_path, jpeg_roots, monkeypatch):
    cfg = CONFIGS[rid]
    try:
        sc = standin(cfg, jpeg_roots)
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"{rid}: cannot build the stand-in: {e}") from e
    samplers = []
    import common.loader as L

    orig = L.FileLoader.__init__

    def spy(self, *a, **k):
        orig(self, *a, **k)
        if self.train:
            samplers.append(type(self.sampler).__name__)

    monkeypatch.setattr(L.FileLoader, "__init__", spy)
    from common.data import DataError

    try:
        res = train(sc, tmp_path / "run", tmp_path / "ck", progress=False)
    except DataError as e:
        if not _file_based(cfg["dataset"]["name"]) and not dataset_info(cfg["dataset"]["name"]).image_size:
            pytest.skip(f"{cfg['dataset']['name']} data not available here: {str(e).splitlines()[0]}")
        raise
    rows = [json.loads(s) for s in (tmp_path / "run" / "epochs.jsonl").read_text().splitlines()]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    t = sc["train"]
    # the loop ran the schedule it says and trained on finite losses
    assert len(rows) == total_epochs(t) and all(math.isfinite(r["train_loss"]) for r in rows)
    if _file_based(cfg["dataset"]["name"]) or sc["dataset"].get("transform"):
        want = "RepeatAugSampler" if int(t.get("repeated_aug") or 1) > 1 else "SeededSampler"
        assert samplers == [want]
    # statistic fields
    assert {"test", "best_epoch_test", "last_epoch", "selected_epoch"} <= set(m)
    task = m["task"]
    key = "test_rmse" if task == "regression" else "test_top1"
    assert all(key in r for r in rows)
    if t.get("ema"):
        assert set(m["test_ema"]) == set(m["test"]) and all(f"{key}_ema" in r for r in rows)
    if t["select"] in ("best_val", "best_val_acc"):
        assert 1 <= m["selected_epoch"] <= len(rows)
    # the lr recorded after each epoch is the schedule's value at that epoch's last step
    n = m["provenance"]["dataset_sizes"]["train"]
    steps = (n // t["batch_size"]) if t["drop_last"] else -(-n // t["batch_size"])
    if int(t.get("repeated_aug") or 1) > 1:
        steps = None  # RepeatAugSampler sets the epoch length; checked by the sampler tests
    if steps:
        for r in rows:
            assert r["lr"] == pytest.approx(lr_at(r["epoch"] * steps - 1, steps, t), rel=1e-9)


def test_every_paper_with_a_paper_grid_is_covered():
    from common.config import discover_papers, expand_grid, load_experiments

    papers = {p for p, path in discover_papers(ROOT).items() if expand_grid(load_experiments(path), "paper", p)}
    covered = set()
    runs, by_paper = plan("paper", ROOT)
    for p, ids in by_paper.items():
        if ids:
            covered.add(p)
    assert papers == covered and CONFIGS
