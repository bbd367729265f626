"""RankMixup (papers/rankmixup): hand-computed worked examples as exact equalities, invariants (hypothesis), the step's structure, baselines,
models, datasets, configs, tables/plots and a 1-epoch end-to-end run of every method."""
from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from common.config import expand_grid, load_experiments, resolve
from common.data import DataError
from common.losses import cross_entropy
from common.methods import Batch, ConfigError, RunContext, TrainState, build_method
from papers.rankmixup import baselines, method as rm
from common.image_datasets import load_tiny_imagenet
from papers.rankmixup.models import resnet50_cifar, resnet50_tiny

torch.set_num_threads(1)  # tiny tensors: intra-op threads only add overhead on a loaded machine
ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "papers" / "rankmixup"
LOG2 = math.log2

# --------------------------------------------------------------------------- MRL
RAW = torch.tensor([[3, 1, 0], [0.5, 2.5, 0], [1, 0, 2], [2, 2, 0]], dtype=torch.float64)
AUG = torch.tensor([[2, 1.5, 0], [0, 3, 0.5], [1, 1, 1], [2.5, 0, 0]], dtype=torch.float64)
ALL = torch.ones(4, dtype=torch.bool)


def test_mrl_worked_example_logits():
    assert rm.mrl(RAW, AUG, ALL, margin=2.0).item() == pytest.approx(1.75, abs=1e-7)  # hinges [1, 2.5, 1, 2.5]
    assert rm.mrl(RAW, AUG, ALL, margin=0.5).item() == pytest.approx(0.5, abs=1e-7)  # hinges [0, 1, 0, 1]


def test_mrl_worked_example_probabilities():
    c_raw = F.softmax(RAW, 1).max(1).values
    c_aug = F.softmax(AUG, 1).max(1).values
    assert c_raw.tolist() == pytest.approx([0.843795, 0.821409, 0.665241, 0.468311], abs=1e-6)
    assert c_aug.tolist() == pytest.approx([0.574097, 0.883492, 0.333333, 0.858981], abs=1e-6)
    assert rm.mrl(RAW, AUG, ALL, 0.1, space="prob").item() == pytest.approx(0.163188, abs=1e-6)


def test_mrl_mask_example():
    y = torch.tensor([0, 1, 2, 0])
    perm = torch.tensor([1, 0, 3, 2])
    assert rm.not_one_hot(y, perm, 0.7).tolist() == [True] * 4  # soft labels (.7,.3,0), ... no one-hot row
    keep = torch.tensor([True, True, True, False])  # row 3 a same-class mix
    assert rm.mrl(RAW, AUG, keep, 2.0, mask="official_broadcast").item() == pytest.approx(1.3125, abs=1e-7)
    assert rm.mrl(RAW, AUG, keep, 2.0, mask="per_sample").item() == pytest.approx(1.125, abs=1e-7)


def test_not_one_hot_cases():
    y = torch.tensor([0, 0, 1, 2])
    perm = torch.tensor([1, 0, 3, 3])  # 0<->1 same class; 2 -> 3 cross; 3 -> itself
    assert rm.not_one_hot(y, perm, 0.4).tolist() == [False, False, True, False]
    assert not rm.not_one_hot(y, perm, 1.0).any() and not rm.not_one_hot(y, perm, 0.0).any()


logit_rows = st.lists(st.floats(-5, 5, allow_nan=False), min_size=3, max_size=3)


@settings(max_examples=60, deadline=None)
@given(raw=st.lists(logit_rows, min_size=1, max_size=6), shift=st.floats(-3, 3), m=st.floats(0, 3), dm=st.floats(0, 2),
       space=st.sampled_from(["logit", "prob"]), mask=st.sampled_from(rm.MRL_MASKS), data=st.data())
def test_mrl_invariants(raw, shift, m, dm, space, mask, data):
    z = torch.tensor(raw, dtype=torch.float64)
    za = torch.tensor(data.draw(st.lists(logit_rows, min_size=len(raw), max_size=len(raw))), dtype=torch.float64)
    keep = torch.tensor(data.draw(st.lists(st.booleans(), min_size=len(raw), max_size=len(raw))))
    m = min(m, 0.99) if space == "prob" else m
    loss = rm.mrl(z, za, keep, m, space, mask)
    assert loss >= 0
    if space == "logit":  # never decreases in the margin
        assert rm.mrl(z, za, keep, m + dm, space, mask) >= loss - 1e-6
        # zero when every augmented max logit is at least m below the raw one
        assert rm.mrl(z, z - z.max(1, keepdim=True).values.abs() - m - 1.0, keep, m, space, mask) == 0
    # shifting raw and augmented rows together changes neither variant
    assert rm.mrl(z + shift, za + shift, keep, m, space, mask).item() == pytest.approx(loss.item(), abs=1e-5)
    # shifting the raw row alone: probability version unchanged (softmax is shift-invariant)
    if space == "prob":
        assert rm.mrl(z + shift, za, keep, m, space, mask).item() == pytest.approx(loss.item(), abs=1e-5)


def test_mrl_raw_shift_changes_logit_version():
    assert rm.mrl(RAW + 1.0, AUG, ALL, 2.0).item() == pytest.approx(0.75, abs=1e-7)  # hinges [0, 1.5, 0, 1.5]


# --------------------------------------------------------------------------- M-NDCG
REL = torch.tensor([[0.8], [0.55], [0.7]], dtype=torch.float64)  # lambdas [0.8, 0.55, 0.3], cross-class
IDCG = 1 + 0.8 / LOG2(3) + 0.7 / 2 + 0.55 / LOG2(5)


def L(c0, cq, rel=REL):
    return rm.mndcg(torch.tensor([c0], dtype=torch.float64), torch.tensor(cq, dtype=torch.float64).view(-1, 1), rel).item()


def test_relevance_from_lambdas():
    y = torch.tensor([0, 1])
    perm = torch.tensor([[1, 0]] * 3)
    lam = torch.tensor([0.8, 0.55, 0.3], dtype=torch.float64)
    assert rm.relevance(y, perm, lam)[:, 0].tolist() == pytest.approx([0.8, 0.55, 0.7])
    assert rm.relevance(y, perm, lam, "anchor_label")[:, 0].tolist() == pytest.approx([0.8, 0.55, 0.3])
    same = rm.relevance(torch.tensor([2, 2]), perm, lam)  # same-class partner: relevance exactly 1
    assert (same == 1.0).all()
    assert IDCG == pytest.approx(2.091616, abs=1e-6)


def test_mndcg_worked_examples():
    assert L(1.0, [0.8, 0.55, 0.7]) == pytest.approx(0.0, abs=1e-12)  # confidences = relevances
    assert L(0.95, [0.85, 0.6, 0.7]) == pytest.approx(0.001471, abs=1e-6)  # DCG 2.094696 > IDCG
    assert L(0.99, [0.99] * 3) == pytest.approx(0.175227, abs=1e-6)  # over-confidence penalised
    assert L(0.5, [0.4, 0.35, 0.3]) == pytest.approx(0.496510, abs=1e-6)
    rel = torch.tensor([[0.8], [0.7], [0.6]], dtype=torch.float64)
    assert L(0.9, [0.8, 0.6, 0.5], rel) == pytest.approx(0.091365, abs=1e-6)  # relevance order
    assert L(0.9, [0.5, 0.6, 0.8], rel) == pytest.approx(0.119794, abs=1e-6)  # reversed order


def test_mndcg_from_logits():
    c0 = F.softmax(torch.tensor([[4.0, 1, 0]], dtype=torch.float64), 1).max(1).values
    cq = F.softmax(torch.tensor([[2.0, 1, 0], [1, 1, 0], [3, 0, 0]], dtype=torch.float64), 1).max(1).values.view(3, 1)
    assert c0.item() == pytest.approx(0.936240, abs=1e-6)
    assert cq.flatten().tolist() == pytest.approx([0.665241, 0.422319, 0.909443], abs=1e-6)
    dcg = c0.item() + cq[0].item() / LOG2(3) + cq[2].item() / 2 + cq[1].item() / LOG2(5)
    assert dcg == pytest.approx(1.992564, abs=1e-6)
    assert rm.mndcg(c0, cq, REL).item() == pytest.approx(0.047357, abs=1e-6)


def test_mndcg_plain_ratio_option():
    assert L(0.99, [0.99] * 3) != pytest.approx(rm.mndcg(torch.tensor([0.99]), torch.full((3, 1), 0.99), REL.float(),
                                                           ratio="dcg_over_idcg").item())
    v = rm.mndcg(torch.tensor([0.5], dtype=torch.float64), torch.tensor([[0.4], [0.35], [0.3]], dtype=torch.float64), REL,
                 ratio="dcg_over_idcg")
    assert v.item() == pytest.approx(0.496510, abs=1e-6)  # DCG < IDCG: both ratios agree


def test_mndcg_ties_are_ordered_stably():
    # two same-class copies (relevance 1) with different confidences: copy order decides the slot
    rel = torch.tensor([[1.0], [0.6], [1.0]], dtype=torch.float64)
    got = L(0.9, [0.3, 0.5, 0.8], rel)
    dcg = 0.9 + 0.3 / LOG2(3) + 0.8 / 2 + 0.5 / LOG2(5)  # order: copy 0, copy 2 (tie, later index), copy 1
    idcg = 1 + 1 / LOG2(3) + 1 / 2 + 0.6 / LOG2(5)
    assert got == pytest.approx(1 - dcg / idcg, abs=1e-12)


conf = st.floats(0.05, 1.0)


@settings(max_examples=60, deadline=None)
@given(c0=conf, cq=st.lists(conf, min_size=3, max_size=3), lam=st.lists(st.floats(0.01, 0.99), min_size=3, max_size=3),
       perm=st.permutations([0, 1, 2]))
def test_mndcg_invariants(c0, cq, lam, perm):
    rel = torch.maximum(torch.tensor(lam, dtype=torch.float64), 1 - torch.tensor(lam, dtype=torch.float64)).view(3, 1)
    loss = L(c0, cq, rel)
    assert 0.0 <= loss < 1.0
    # permuting the copies together with their relevances changes nothing (ties aside)
    if len(set(rel.flatten().tolist())) == 3:
        p = list(perm)
        assert L(c0, [cq[i] for i in p], rel[p]) == pytest.approx(loss, abs=1e-12)
    # for a fixed multiset of confidences with DCG <= IDCG, relevance order is best and reversed worst
    srt = sorted(cq, reverse=True)
    rs = torch.tensor(sorted(rel.flatten().tolist(), reverse=True), dtype=torch.float64).view(3, 1)
    best, worst = L(c0, srt, rs), L(c0, srt[::-1], rs)
    disc = [1 / LOG2(3), 1 / 2, 1 / LOG2(5)]
    dcg_best = c0 + sum(c * d for c, d in zip(srt, disc))
    idcg = 1 + sum(r * d for r, d in zip(rs.flatten().tolist(), disc))
    if dcg_best <= idcg:
        assert best <= L(c0, cq, rs) + 1e-12 <= worst + 2e-12


# --------------------------------------------------------------------------- the training step
def make_ctx(k=3, smoothing=0.0):
    return RunContext("classification", k, (1, 4, 4), torch.device("cpu"), None, None, label_smoothing=smoothing)


class Recorder(nn.Module):
    def __init__(self, k=3):
        super().__init__()
        self.lin = nn.Linear(16, k)
        self.sizes = []

    def forward(self, x):
        self.sizes.append(x.shape[0])
        return self.lin(x.flatten(1)) * 3


def test_mixed_copies_structure():
    x = torch.randn(6, 1, 4, 4)
    xm, lam, perm = rm.mixed_copies(x, 3, 2.0, torch.Generator().manual_seed(0))
    assert xm.shape == (18, 1, 4, 4) and lam.shape == (3,) and perm.shape == (3, 6)
    assert ((lam > 0) & (lam < 1)).all() and len(set(lam.tolist())) == 3  # one scalar per copy
    for q in range(3):
        assert torch.allclose(xm[q * 6:(q + 1) * 6], lam[q].float() * x + (1 - lam[q].float()) * x[perm[q]], atol=1e-6)
        assert sorted(perm[q].tolist()) == list(range(6))
    xm2, lam2, perm2 = rm.mixed_copies(x, 3, 2.0, torch.Generator().manual_seed(0))
    assert torch.equal(xm, xm2) and torch.equal(perm, perm2)


@pytest.mark.parametrize("spec,q", [({"name": "rankmixup_mrl"}, 1), ({"name": "rankmixup_mndcg"}, 3),
                                    ({"name": "rankmixup_mndcg", "num_mixup": 2}, 2)])
def test_step_two_passes_and_loss(spec, q):
    torch.manual_seed(0)
    model, ctx = Recorder(), make_ctx()
    meth = build_method(spec, ctx)
    x, y = torch.randn(8, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    st_ = TrainState(0, 0, 1, 1, torch.Generator().manual_seed(5), ctx)
    out = meth.step(model, Batch(x, y, torch.arange(8)), st_)
    assert model.sizes == [8, 8 * q]  # raw pass, then ONE pass over the Q*B mixed images
    # recompute by hand with the same draws
    xm, lam, perm = rm.mixed_copies(x, q, 2.0, torch.Generator().manual_seed(5))
    z, zm = model(x), model(xm).view(q, 8, -1)
    if q == 1:
        rank = rm.mrl(z, zm[0], rm.not_one_hot(y, perm[0], float(lam[0])), 2.0)
    else:
        rank = rm.mndcg(F.softmax(z, 1).max(1).values, F.softmax(zm, 2).max(2).values, rm.relevance(y, perm, lam).float())
    assert out.loss.item() == pytest.approx((F.cross_entropy(z, y) + 0.1 * rank).item(), abs=1e-6)
    assert torch.equal(out.logits, z) and out.mix.lam == 1.0
    assert out.logs["rank"] == pytest.approx(rank.item(), abs=1e-6)
    # no stop-gradient: the ranking term reaches the weights through the mixed branch too
    model.zero_grad()
    out.loss.backward()
    assert model.lin.weight.grad.abs().sum() > 0


def test_rank_term_gradient_flows_through_both_branches():
    z = torch.tensor([[1.0, 0.0, 0.0]], requires_grad=True)
    za = torch.tensor([[1.5, 0.0, 0.0]], requires_grad=True)
    rm.mrl(z, za, torch.tensor([True]), 2.0).backward()
    assert z.grad[0, 0] == -1 and za.grad[0, 0] == 1  # pushes the raw max logit up, the mixed one down


@pytest.mark.parametrize("spec,key", [
    ({"name": "rankmixup_mrl", "alpha": 0.0}, "alpha"),
    ({"name": "rankmixup_mrl", "margin": -1.0}, "margin"),
    ({"name": "rankmixup_mrl", "space": "prob"}, "margin"),  # default margin 2 is meaningless on probabilities
    ({"name": "rankmixup_mrl", "mask": "rowwise"}, "mask"),
    ({"name": "rankmixup_mrl", "space": "softmax"}, "space"),
    ({"name": "rankmixup_mrl", "weight": -0.1}, "weight"),
    ({"name": "rankmixup_mrl", "num_mixup": 3}, "num_mixup"),  # MRL is defined for Q = 1 only
    ({"name": "rankmixup_mndcg", "num_mixup": 0}, "num_mixup"),
    ({"name": "rankmixup_mndcg", "num_mixup": 2.5}, "num_mixup"),
    ({"name": "rankmixup_mndcg", "relevance": "lambda"}, "relevance"),
    ({"name": "rankmixup_mndcg", "ratio": "min"}, "ratio"),
    ({"name": "focal", "gamma": -1}, "gamma"),
    ({"name": "label_smoothing", "smoothing": 1.0}, "smoothing"),
])
def test_param_validation_names_the_key(spec, key):
    with pytest.raises(ConfigError, match=key):
        build_method(spec, make_ctx())


def test_regression_task_rejected():
    ctx = RunContext("regression", 1, (4,), torch.device("cpu"), None, None)
    for name in ("rankmixup_mrl", "rankmixup_mndcg", "focal", "label_smoothing"):
        with pytest.raises(ConfigError, match="regression"):
            build_method(name, ctx)


# --------------------------------------------------------------------------- baselines
def test_focal_loss_values():
    z = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([0, 2])
    assert baselines.focal_loss(z, y, 0.0).item() == pytest.approx(F.cross_entropy(z, y).item(), abs=1e-6)
    p = F.softmax(z, 1)[[0, 1], [0, 2]]
    want = (-(1 - p) ** 3 * p.log()).mean()
    assert baselines.focal_loss(z, y, 3.0).item() == pytest.approx(want.item(), abs=1e-6)


def test_label_smoothing_method_equals_erm_with_smoothing():
    model, x, y = Recorder(), torch.randn(5, 1, 4, 4), torch.tensor([0, 1, 2, 1, 0])
    st_ = TrainState(0, 0, 1, 1, torch.Generator(), make_ctx())
    ls = build_method({"name": "label_smoothing", "smoothing": 0.2}, make_ctx()).step(model, Batch(x, y, None), st_)
    erm = build_method("erm", make_ctx(smoothing=0.2)).step(model, Batch(x, y, None), st_)
    assert ls.loss.item() == pytest.approx(erm.loss.item(), abs=1e-7)
    assert ls.loss.item() == pytest.approx(cross_entropy(model(x), y, 0.2).item(), abs=1e-7)
    with pytest.raises(ConfigError, match="label_smoothing"):
        build_method("label_smoothing", make_ctx(smoothing=0.1))


# --------------------------------------------------------------------------- models and data
def test_paper_resnets():
    m = resnet50_cifar(10, (3, 32, 32))
    assert sum(p.numel() for p in m.parameters()) == 23_520_842  # the usual CIFAR ResNet-50 size
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    t = resnet50_tiny(200, (3, 64, 64))
    assert t.fc.in_features == 2048 * 4 and t(torch.randn(1, 3, 64, 64)).shape == (1, 200)


def _jpeg(color) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buf, "JPEG")
    return buf.getvalue()


def _tiny_files(wnids=("n02", "n01")):
    files = {"tiny-imagenet-200/wnids.txt": "\n".join(wnids).encode()}
    ann = []
    for i, w in enumerate(wnids):
        for j in range(3):
            files[f"tiny-imagenet-200/train/{w}/images/{w}_{j}.JPEG"] = _jpeg((40 * i, 10 * j, 0))
        files[f"tiny-imagenet-200/val/images/val_{i}.JPEG"] = _jpeg((0, 0, 50 * i))
        ann.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63")
    files["tiny-imagenet-200/val/val_annotations.txt"] = "\n".join(ann).encode()
    return files


@pytest.mark.parametrize("layout", ["folder", "zip"])
def test_tiny_imagenet_loader(tmp_path, monkeypatch, layout):
    monkeypatch.setenv("MIXREPRO_CACHE", str(tmp_path / "cache"))
    base = tmp_path / "tiny_imagenet"
    base.mkdir()
    files = _tiny_files()
    if layout == "folder":
        for n, b in files.items():
            (base / n).parent.mkdir(parents=True, exist_ok=True)
            (base / n).write_bytes(b)
    else:
        with zipfile.ZipFile(base / "tiny-imagenet-200.zip", "w") as zf:
            for n, b in files.items():
                zf.writestr(n, b)
    for _ in range(2):  # second call reads the cache
        s = load_tiny_imagenet(root=str(tmp_path))
        assert s.num_classes == 2 and s.train.x.shape == (6, 3, 64, 64) and s.test.x.shape == (2, 3, 64, 64)
        assert s.train.y.tolist() == [0, 0, 0, 1, 1, 1]  # sorted wnids: n01 -> 0
        assert s.test.y.tolist() == [1, 0]  # val_0 is n02 (class 1)


def test_tiny_imagenet_missing_names_expected_files(tmp_path):
    with pytest.raises(DataError, match="tiny-imagenet-200"):
        load_tiny_imagenet(root=str(tmp_path))


# --------------------------------------------------------------------------- configs and reported figures
def test_experiments_expand_and_cpu_uses_the_shared_setting():
    exp = load_experiments(PAPER / "experiments.yaml")
    counts = {s: len(expand_grid(exp, s, "rankmixup")) for s in ("quick", "cpu", "paper")}
    assert counts == {"quick": 18, "cpu": 30, "paper": 54}
    regimes = {}
    for cfg in expand_grid(exp, "cpu", "rankmixup"):
        assert cfg["dataset"]["name"] == "cifar10" and cfg["model"] == {"name": "resnet20", "width": 16}
        assert cfg["train"]["weight_decay"] == 5e-4 and cfg["train"]["num_threads"] is None
        regimes.setdefault((cfg["dataset"]["train_size"], cfg["train"]["epochs"]), set()).add(
            (cfg["method"]["name"], cfg["seed"]))
    # the shared data-limited arm and the calibration arm: the same five methods x 3 seeds in each
    assert sorted(regimes) == [(1000, 100), (5000, 20)]
    assert regimes[1000, 100] == regimes[5000, 20] and len(regimes[5000, 20]) == 15
    names = {c["method"]["name"] for c in expand_grid(exp, "cpu", "rankmixup")}
    assert {c["method"] for c in exp["claims"]} | {c["baseline"] for c in exp["claims"]} <= names
    tiny = [c for c in expand_grid(exp, "paper", "rankmixup") if c["dataset"]["name"] == "tiny_imagenet"]
    assert {(c["method"].get("alpha"), c["method"].get("margin")) for c in tiny if c["method"]["name"] == "rankmixup_mrl"} == {(1.0, 1.0)}


def test_reported_csv_is_the_specs_rankmixup_rows():
    spec = Path(__file__).resolve().parents[2] / "shared" / "specs" / "reported_cmixup_rankmixup.csv"
    ours = list(csv.DictReader((PAPER / "reported.csv").open()))
    assert list(ours[0]) == ["paper", "method", "dataset", "model", "epochs", "metric", "value", "baseline_method",
                             "baseline_value", "source"]
    exp = load_experiments(PAPER / "experiments.yaml")
    for claim in exp["claims"]:
        if "reported" in claim:
            hits = [r for r in ours if all(r[k] == v for k, v in claim["reported"].items())]
            assert len(hits) == 1, claim["id"]
            assert not hits[0]["source"].startswith("UNVERIFIED")
    if spec.exists():
        theirs = [r for r in csv.DictReader(spec.open()) if r["paper"].startswith("RankMixup")]
        assert ours == theirs


# --------------------------------------------------------------------------- end to end, tables, plots
METHODS = ["erm", {"name": "label_smoothing", "smoothing": 0.2}, {"name": "focal"}, "mixup",
           {"name": "rankmixup_mrl"}, {"name": "rankmixup_mndcg"}]


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
    from common.train import train

    out = []
    root = tmp_path_factory.mktemp("rankmixup_runs")
    for i, m in enumerate(METHODS):
        cfg = resolve({"dataset": {"name": "digits", "val_size": 200, "train_size": 300}, "model": {"name": "resnet8", "width": 8},
                       "method": m, "seed": 0, "train": {"epochs": 1, "num_threads": 1}, "eval": {"occlusion": None}})
        res = train(cfg, root / f"runs/r{i}", progress=False)
        out.append(root / f"runs/r{i}/metrics.json")
        assert res is not None
    return out


def test_every_method_trains_one_epoch(digits_runs):
    for p in digits_runs:
        m = json.loads(p.read_text())
        t = m["test"]
        assert 0 <= t["top1"] <= 100 and all(0 <= t[k] <= 1 for k in ("ece", "adaece", "cw_ece", "ts_ece", "ts_adaece"))
        assert t["temperature"] > 0 and sum(t["reliability"]["count"]) == 500
    logs = [json.loads(x) for x in (digits_runs[4].parent / "epochs.jsonl").read_text().splitlines()]
    assert {"train_rank", "train_keep", "train_ce"} <= set(logs[0])


def test_calibration_table_and_reliability_figure(digits_runs, tmp_path):
    from papers.rankmixup.plots import figures, make_figures, pool_reliability, pooled_ece
    from papers.rankmixup.tables import calibration_table, to_markdown

    df = calibration_table(digits_runs + digits_runs[:2])  # duplicates count once
    assert sorted(df["method"]) == sorted(["erm", "label_smoothing", "focal", "mixup", "rankmixup_mrl", "rankmixup_mndcg"])
    assert (df["n"] == 1).all()
    m = json.loads(digits_runs[0].read_text())["test"]
    row = df[df["method"] == "erm"].iloc[0]
    assert row["ece_mean"] == pytest.approx(100 * m["ece"]) and row["ts_adaece_mean"] == pytest.approx(100 * m["ts_adaece"])
    assert row["top1_mean"] == pytest.approx(m["top1"])
    assert "RankMixup" not in to_markdown(df) and "| digits |" in to_markdown(df)
    # pooling one run's bins reproduces its ECE
    assert pooled_ece(pool_reliability([m["reliability"]])) == pytest.approx(m["ece"], abs=1e-9)
    out = figures(digits_runs, tmp_path / "fig")
    assert len(out) == 1 and out[0].stat().st_size > 10_000
    from common.aggregate import load_runs

    out = make_figures(load_runs(digits_runs), tmp_path / "fig2")  # the hook common.aggregate calls
    assert [p.name for p in out] == ["reliability.png", "reliability.pdf"] and all(p.exists() for p in out)
