"""The data path: the in-memory tensor path is unchanged (metrics pinned from before the
file-based loader existed), the file-based loader, samplers and per-sample seeding."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from common.config import resolve

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "trainer_identity.json"

# Two short runs of the in-memory path; their metrics were recorded with the trainer as it was
# before the file-based loader, EMA and the new schedule keys (tests/fixtures/trainer_identity.json).
IDENTITY_CONFIGS = {
    "digits_mixup": {"seed": 3, "dataset": {"name": "digits", "train_size": 300, "test_size": 200},
                     "model": {"name": "resnet8", "width": 8}, "method": {"name": "mixup", "alpha": 1.0},
                     "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "warmup_epochs": 1, "num_threads": 1,
                               "clip_grad_norm": 5.0}},
    "random_cutmix": {"seed": 1, "dataset": {"name": "random", "val_size": 16,
                                             "options": {"n_train": 80, "n_test": 32, "image_size": 16}},
                      "model": {"name": "resnet8", "width": 8}, "method": {"name": "cutmix", "alpha": 1.0, "prob": 0.5},
                      "train": {"epochs": 2, "batch_size": 16, "optimizer": "adamw", "lr": 0.003,
                                "weight_decay": 0.05, "schedule": "step", "milestones": [1], "num_threads": 1,
                                "select": "best_val"},
                      "eval": {"batch_size": 20}},
}


def identity_metrics(cfg: dict, tmp: Path) -> dict:
    """Everything a run records that does not depend on time or the machine."""
    from common.train import train

    res = train(resolve(cfg), tmp / "run", tmp / "ckpt", progress=False)
    rows = [json.loads(s) for s in (tmp / "run" / "epochs.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("train_secs")
    return {"test": res["test"], "selected_epoch": res["selected_epoch"], "best_epoch_test": res["best_epoch_test"],
            "epochs": rows}


def _assert_close(got, want, path="metrics"):
    """Same structure and integers; floats equal up to 1e-4 relative. Runs on CPUs of another
    micro-architecture differ in the last bits of float sums (seen between hosts of this kind), so
    the fixture pins behaviour, not the host's rounding."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), f"{path}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            _assert_close(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: length differs"
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_close(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-4, abs=1e-7), f"{path}: {got} != {want}"
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


@pytest.mark.parametrize("name", sorted(IDENTITY_CONFIGS))
def test_in_memory_path_metrics_unchanged(tmp_path, name):
    want = json.loads(FIXTURE.read_text())[name]
    _assert_close(identity_metrics(IDENTITY_CONFIGS[name], tmp_path), want)


# --------------------------------------------------------------------------- file-based loader
def _image_folder(root: Path, per_class=(6, 3), classes=("n02", "n01"), hw=(40, 52)) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, per in zip(("train", "val"), per_class):
        for c in classes:
            (root / "imagenet" / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(per):
                Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(
                    root / "imagenet" / split / c / f"{i}.JPEG", quality=90)
    return root


DEIT = {"input_size": 24, "interpolation": "bicubic", "auto_augment": "rand-m9-mstd0.5-inc1", "re_prob": 0.25}


def _loader(splits, workers: int, repeats: int = 1, world: int = 1, rank: int = 0, spec=DEIT, bs: int = 4):
    from common.loader import FileLoader
    from common.transforms import build_transform

    tf = build_transform(spec, 24, splits.mean, splits.std, train=True)
    return FileLoader(splits.train, bs, tf, None, shuffle=True, seed=5, train=True, workers=workers, world=world,
                      rank=rank, repeats=repeats, persistent_workers=workers > 0)


def _epoch_bytes(loader, e):
    return [(b.x.numpy().tobytes(), b.y.tolist(), b.index.tolist()) for b in loader.epoch(e)]


def test_batches_identical_for_0_and_2_workers_and_after_resume(tmp_path):
    """Per-sample seeding from (seed, epoch, index): worker count and resuming change no byte."""
    from common.data import prepare_splits

    s = prepare_splits({"name": "imagenet", "root": str(_image_folder(tmp_path))})
    l0, l2 = _loader(s, 0), _loader(s, 2)
    e0, e1 = _epoch_bytes(l0, 0), _epoch_bytes(l0, 1)
    assert _epoch_bytes(l2, 0) == e0 and _epoch_bytes(l2, 1) == e1
    assert _epoch_bytes(_loader(s, 0), 1) == e1  # a fresh (resumed) loader starting at epoch 1
    assert e0 != e1 and sorted(i for _, _, idx in e0 for i in idx) == list(range(12))
    x = torch.cat([torch.frombuffer(bytearray(b), dtype=torch.float32) for b, _, _ in e0])
    assert x.numel() == 12 * 3 * 24 * 24 and torch.isfinite(x).all()


def test_zero_workers_leave_the_global_rng_untouched(tmp_path):
    from common.data import prepare_splits

    s = prepare_splits({"name": "imagenet", "root": str(_image_folder(tmp_path))})
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    list(_loader(s, 0).epoch(0))
    assert torch.equal(torch.rand(3), want)


def test_repeat_aug_sampler_repeats_each_index_across_ranks():
    """timm's RepeatAugSampler (DeiT): in the global order positions 3q..3q+2 hold one index, the copies
    go to different ranks, each rank draws len/world samples, and the order is keyed by (seed, epoch)."""
    from timm.data.distributed_sampler import RepeatAugSampler

    from common.loader import _repeat_aug_indices, make_sampler

    n, world, reps = 24, 2, 3
    ranks = [make_sampler(n, 7, True, world, r, reps) for r in range(world)]
    assert all(isinstance(s, RepeatAugSampler) for s in ranks)

    def global_order(samplers, e):
        per = [_repeat_aug_indices(s, e) for s in samplers]
        assert all(len(p) == n // world for p in per)
        return [per[k % world][k // world] for k in range(n)]

    g0 = global_order(ranks, 0)
    for q in range(0, n - reps + 1, reps):
        assert g0[q] == g0[q + 1] == g0[q + 2]
        assert {(q + j) % world for j in range(reps)} == {0, 1}  # copies land on both ranks
    assert len(set(g0)) == n // reps
    assert global_order(ranks, 1) != g0 and global_order(ranks, 0) == g0
    assert global_order([make_sampler(n, 8, True, world, r, reps) for r in range(world)], 0) != g0


def test_distributed_sampler_under_ddp_shards_the_data():
    from torch.utils.data import DistributedSampler

    from common.loader import SeededSampler, make_sampler

    assert isinstance(make_sampler(10, 0, True), SeededSampler)
    s = [make_sampler(10, 0, True, 2, r) for r in range(2)]
    assert all(isinstance(x, DistributedSampler) for x in s)
    for x in s:
        x.set_epoch(3)
    a, b = list(s[0]), list(s[1])
    assert sorted(a + b) == list(range(10)) and len(a) == len(b) == 5


def test_repeated_copies_get_different_augmentations(tmp_path):
    from common.data import prepare_splits

    s = prepare_splits({"name": "imagenet", "root": str(_image_folder(tmp_path))})
    ld = _loader(s, 0, repeats=3, bs=3)
    items = ld.batches(0)[0]
    assert len({i for i, _, _ in items}) == 1 and [r for _, _, r in items] == [0, 1, 2]
    b = next(iter(ld.epoch(0)))
    assert not torch.equal(b.x[0], b.x[1]) and not torch.equal(b.x[1], b.x[2])


def test_shuffle_false_keeps_the_file_order(tmp_path):
    from common.data import prepare_splits
    from common.loader import FileLoader
    from common.transforms import build_transform

    s = prepare_splits({"name": "imagenet", "root": str(_image_folder(tmp_path))})
    tf = build_transform({"input_size": 16}, 16, s.mean, s.std, train=True)
    ld = FileLoader(s.train, 5, tf, shuffle=False, train=True)
    assert [b.index.tolist() for b in ld.epoch(0)] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]


def test_tiny_imagenet_zip_read_by_two_workers(tmp_path):
    """The zip source is opened once per worker process; labels follow the sorted wnids."""
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    from common.data import BatchTransform, DataError
    from common.image_datasets import load_tiny_imagenet
    from common.loader import DecodeCenter, FileLoader

    def jpeg(v, size=64):
        buf = io.BytesIO()
        Image.new("RGB", (size, size), (v, 0, 0)).save(buf, "JPEG")
        return buf.getvalue()

    base = tmp_path / "tiny_imagenet"
    base.mkdir()
    with zipfile.ZipFile(base / "tiny-imagenet-200.zip", "w") as zf:
        zf.writestr("tiny-imagenet-200/wnids.txt", "n2\nn1\n")
        for w in ("n1", "n2"):
            for j in range(4):
                zf.writestr(f"tiny-imagenet-200/train/{w}/images/{w}_{j}.JPEG", jpeg(30 * j))
        zf.writestr("tiny-imagenet-200/val/images/v0.JPEG", jpeg(200))
        zf.writestr("tiny-imagenet-200/val/images/v1.JPEG", jpeg(100, 32))  # wrong size
        zf.writestr("tiny-imagenet-200/val/val_annotations.txt", "v0.JPEG\tn2\t0\t0\t1\t1\nv1.JPEG\tn1\t0\t0\t1\t1\n")
    s = load_tiny_imagenet(root=str(tmp_path))
    assert s.num_classes == 2 and s.input_shape == (3, 64, 64) and s.train.y.tolist() == [0] * 4 + [1] * 4
    bt = BatchTransform(s.mean, s.std, 4, True)
    outs = []
    for w in (0, 2):
        ld = FileLoader(s.train, 4, DecodeCenter(64, None), bt, shuffle=True, seed=1, train=True, workers=w)
        outs.append([b.x for b in ld.epoch(0)])
    assert all(torch.equal(a, b) for a, b in zip(*outs)) and len(outs[0]) == 2
    with pytest.raises(DataError, match=r"v1.JPEG.*expected \(64, 64\)"):
        s.test.x[torch.tensor([1])]
    assert np.asarray(s.test.x[torch.tensor([0])]).shape == (1, 3, 64, 64)


def test_domain_rmse_average_and_worst():
    from common.data import ArrayData
    from common.evaluate import domain_rmse

    y = torch.zeros(6, 1)
    pred = torch.tensor([[1.0], [1.0], [2.0], [2.0], [0.0], [0.0]])
    dom = torch.tensor([0, 0, 1, 1, 2, 2])
    m = domain_rmse(pred, y, dom)
    assert m == {"rmse_domain_avg": pytest.approx(1.0), "rmse_domain_worst": 2.0}
    d = ArrayData(torch.zeros(6, 2), y, dom).subset([5, 0])
    assert d.domain.tolist() == [2, 0]


def _file_run(tmp_path, root, name, workers, **train_over):
    from common.train import train

    cfg = resolve({"seed": 1, "dataset": {"name": "imagenet", "root": str(root), "loader": {"workers": workers},
                                          "transform": {**DEIT, "input_size": 16}},
                   "model": {"name": "resnet8", "width": 4}, "method": {"name": "cutmix", "alpha": 1.0, "prob": 1.0},
                   "train": {"epochs": 2, "batch_size": 3, "lr": 0.01, "warmup_epochs": 1, "warmup_lr": 1e-4,
                             "lr_per": "epoch", "repeated_aug": 3, "ema": {"decay": 0.9}, "num_threads": 1,
                             **train_over},
                   "eval": {"batch_size": 4, "occlusion": None}})
    res = train(cfg, tmp_path / name / "run", tmp_path / name / "ck", progress=False)
    return res, (tmp_path / name / "run" / "epochs.jsonl").read_text()


def test_file_based_run_is_identical_for_0_and_2_workers(tmp_path):
    """A whole run (DeiT transform, repeated augmentation, EMA, per-epoch timm schedule) gives the same
    metrics with 0 and 2 DataLoader workers."""
    root = _image_folder(tmp_path / "data")
    a, ea = _file_run(tmp_path, root, "w0", 0)
    b, eb = _file_run(tmp_path, root, "w2", 2)
    strip = lambda s: [{k: v for k, v in json.loads(r).items() if k != "train_secs"} for r in s.splitlines()]  # noqa: E731
    assert a["test"] == b["test"] and a["test_ema"] == b["test_ema"] and strip(ea) == strip(eb)
    assert [r["lr"] for r in strip(ea)] == [1e-4, pytest.approx(0.5 * 0.01 * (1 + math.cos(math.pi / 2)))]


def test_in_memory_images_take_a_per_sample_transform(tmp_path):
    """``dataset.transform`` on an in-memory dataset (CIFAR-style reflect pad-and-crop) runs the
    per-sample pipeline through the DataLoader instead of the batched tensor path."""
    from common.train import train

    spy = []
    import common.loader as L

    orig = L.FileLoader.__init__

    def init(self, data, *a, **k):
        spy.append(type(data).__name__)
        orig(self, data, *a, **k)

    L.FileLoader.__init__ = init
    try:
        cfg = resolve({"dataset": {"name": "random", "loader": {"workers": 0},
                                   "options": {"n_train": 8, "n_test": 4, "image_size": 8},
                                   "transform": {"reflect_pad": 2}},
                       "model": {"name": "resnet8", "width": 4}, "train": {"epochs": 1, "batch_size": 4},
                       "eval": {"occlusion": None}})
        res = train(cfg, tmp_path / "run", tmp_path / "ck", progress=False)
    finally:
        L.FileLoader.__init__ = orig
    assert spy == ["TensorImages", "TensorImages"] and math.isfinite(res["last_epoch"]["train_loss"])


def _domain_regression(root=None, download=None):
    from common.data import ArrayData, DatasetSplits

    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g)
    y = (x @ torch.tensor([[1.0], [-2.0], [0.5]]))
    train_d = ArrayData(x[:24], y[:24])
    test_d = ArrayData(x[24:], y[24:], torch.arange(16) // 4)  # 4 test domains of 4 samples
    return DatasetSplits("domains", "regression", train_d, test_d, num_classes=1)


def test_metrics_record_per_domain_rmse(tmp_path):
    """A regression test split with a ``domain`` tensor adds C-Mixup's OOD statistic to metrics.json."""
    from common.data import DATASETS, register_dataset
    from common.evaluate import domain_rmse
    from common.train import train

    if "test_domains" not in DATASETS:
        register_dataset("test_domains")(_domain_regression)
    cfg = resolve({"dataset": {"name": "test_domains"}, "model": {"name": "mlp", "hidden": [8]},
                   "train": {"epochs": 2, "batch_size": 8, "optimizer": "adam", "lr": 0.01, "shuffle": False},
                   "eval": {"occlusion": None}})
    res = train(cfg, tmp_path / "run", tmp_path / "ck", progress=False)
    m = res["test"]
    assert m["rmse_domain_worst"] >= m["rmse_domain_avg"] > 0 and "rmse" in m
    # the recorded values are the per-domain RMSEs of the final model's test predictions
    from common.models import build_model

    model = build_model(cfg["model"], 1, (3,))
    model.load_state_dict(torch.load(tmp_path / "ck" / "last.pt", weights_only=True)["model"])
    test = _domain_regression().test
    with torch.no_grad():
        want = domain_rmse(model.eval()(test.x), test.y, test.domain)
    assert m["rmse_domain_avg"] == pytest.approx(want["rmse_domain_avg"], rel=1e-6)
    assert m["rmse_domain_worst"] == pytest.approx(want["rmse_domain_worst"], rel=1e-6)
