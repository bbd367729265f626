"""CutMix (papers/cutmix): hand-computed worked examples as exact equalities, invariants,
hypothesis properties of the box rule, the options, the occlusion evaluator, the datasets and
PyramidNet."""
import math
import pickle
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from common.config import expand_grid, load_experiments
from common.losses import cross_entropy, mixed_cross_entropy, mixed_targets, soft_cross_entropy
from common.methods import Batch, ConfigError, RunContext, TrainState, build_method
from common.mixing import box_from_center, box_lambda, paste_box, sample_box, sample_lambda
from papers.cutmix.method import cutmix_batch, cutmix_per_sample

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers
def _ctx(k=3):
    return RunContext("classification", k, (1, 8, 8), torch.device("cpu"), None, None)


def _state(ctx, seed=0):
    return TrainState(0, 0, 1, 1, torch.Generator().manual_seed(seed), ctx)


class Tiny(torch.nn.Module):
    """Linear model on flattened images; remembers the last input it saw."""

    def __init__(self, d=64, k=3):
        super().__init__()
        self.fc = torch.nn.Linear(d, k)
        self.seen = None

    def forward(self, x):
        self.seen = x.detach().clone()
        return self.fc(x.flatten(1))


def _batch(n=8, h=8, w=8, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, h, w, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    return Batch(x, y, torch.arange(n))


# --------------------------------------------------------------------------- worked examples
BOX_TABLE = [  # (H, W, lam, centre (row, col), box rows x cols half-open, lam_eff)  -- cutmix.md section 5
    (32, 32, 0.75, (16, 16), (8, 24, 8, 24), Fraction(3, 4)),
    (32, 32, 0.75, (0, 0), (0, 8, 0, 8), Fraction(15, 16)),
    (32, 32, 0.75, (31, 31), (23, 32, 23, 32), Fraction("0.9208984375")),
    (32, 32, 0.5, (16, 16), (5, 27, 5, 27), Fraction("0.52734375")),
    (32, 32, 0.7, (16, 16), (8, 24, 8, 24), Fraction(3, 4)),  # cut = 17, rounded down to even 16
    (32, 32, 1.0, (10, 10), None, Fraction(1)),  # empty box
    (32, 32, 0.0, (16, 16), (0, 32, 0, 32), Fraction(0)),
    (32, 32, 0.0, (0, 0), (0, 16, 0, 16), Fraction(3, 4)),
    (224, 224, 0.5, (112, 112), (33, 191, 33, 191), Fraction(1) - Fraction(158 * 158, 224 * 224)),
    (224, 224, 0.3, (5, 200), (0, 98, 107, 224), Fraction("0.771484375")),
]


@pytest.mark.parametrize("h,w,lam,centre,box,lam_eff", BOX_TABLE)
def test_box_table_of_the_spec(h, w, lam, centre, box, lam_eff):
    b = box_from_center(h, w, lam, *centre)
    if box is None:
        assert b.area == 0
    else:
        assert (b.r0, b.r1, b.c0, b.c1) == box
    assert box_lambda(b, h, w) == float(lam_eff)


def test_224_example_value_to_ten_digits():
    b = box_from_center(224, 224, 0.5, 112, 112)
    assert round(box_lambda(b, 224, 224), 10) == 0.5024713010


def test_pixel_example_of_the_spec():
    xa = torch.arange(16.0).reshape(4, 4)
    xb = 100 + torch.arange(16.0).reshape(4, 4)
    x = torch.stack([xa, xb])[:, None]  # (2, 1, 4, 4)
    box = box_from_center(4, 4, 0.75, 2, 2)
    assert (box.r0, box.r1, box.c0, box.c1) == (1, 3, 1, 3)
    assert box_lambda(box, 4, 4) == 0.75
    out = paste_box(x, torch.tensor([1, 0]), box)
    expect = torch.tensor([[0, 1, 2, 3], [4, 105, 106, 7], [8, 109, 110, 11], [12, 13, 14, 15]], dtype=torch.float)
    assert torch.equal(out[0, 0], expect)
    assert torch.equal(x[0, 0], xa)  # the input is not modified


def test_loss_example_of_the_spec():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    ya, yb = torch.tensor([0]), torch.tensor([1])
    assert round(cross_entropy(logits, ya).item(), 6) == 0.407606
    assert round(cross_entropy(logits, yb).item(), 6) == 1.407606
    two_term = mixed_cross_entropy(logits, ya, yb, 0.7).item()
    soft = soft_cross_entropy(logits, mixed_targets(ya, yb, 0.7, 3)).item()
    assert round(two_term, 6) == 0.707606
    assert math.isclose(two_term, soft, rel_tol=1e-6)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_soft_target_ce_equals_two_term_form_with_label_smoothing(eps):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 5, generator=g)
    ya, yb = torch.randint(0, 5, (6,), generator=g), torch.randint(0, 5, (6,), generator=g)
    t = mixed_targets(ya, yb, 0.3, 5, eps)
    assert torch.allclose(t.sum(1), torch.ones(6)) and bool((t >= 0).all() and (t <= 1).all())
    assert math.isclose(mixed_cross_entropy(logits, ya, yb, 0.3, eps).item(), soft_cross_entropy(logits, t).item(),
                        rel_tol=1e-5)


# --------------------------------------------------------------------------- hypothesis: the box rule
@settings(max_examples=200, deadline=None)
@given(h=st.integers(1, 400), w=st.integers(1, 400), lam=st.floats(0.0, 1.0), fy=st.floats(0, 1, exclude_max=True),
       fx=st.floats(0, 1, exclude_max=True))
def test_box_inside_image_and_lambda_is_exact_area_fraction(h, w, lam, fy, fx):
    cy, cx = int(fy * h), int(fx * w)
    b = box_from_center(h, w, lam, cy, cx)
    assert 0 <= b.r0 <= b.r1 <= h and 0 <= b.c0 <= b.c1 <= w
    lam_eff = box_lambda(b, h, w)
    # invariant 1: the official float formula exactly, and within one ulp of the rational 1 - area/(HW)
    assert lam_eff == 1 - b.area / (h * w)
    assert abs(Fraction(lam_eff) - (1 - Fraction(b.area, h * w))) <= Fraction(1, 2**52)
    assert 0.0 <= lam_eff <= 1.0
    # the pasted area never exceeds the requested (1 - lam) * H * W (truncation + even rounding)
    assert b.area <= (1 - lam) * h * w + 1e-9
    # unclipped sides are the official 2 * (int(d * sqrt(1 - lam)) // 2)
    r = math.sqrt(1 - lam)
    assert b.r1 - b.r0 <= 2 * (int(h * r) // 2) and b.c1 - b.c0 <= 2 * (int(w * r) // 2)
    if int(h * r) >= 2 and int(w * r) >= 2:
        assert b.area > 0  # the centre is inside the image, so a box with cut >= 2 is never fully clipped


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 64), w=st.integers(1, 64), n=st.integers(1, 9), seed=st.integers(0, 2**31 - 1),
       alpha=st.sampled_from([0.2, 1.0, 4.0]))
def test_cutmix_batch_pixels_and_lambda(h, w, n, seed, alpha):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, h, w, generator=torch.Generator().manual_seed(seed + 1))
    x0 = x.clone()
    xm, perm, lam_eff, box, lam = cutmix_batch(x, g, alpha)
    assert torch.equal(x, x0)  # no in-place change of the input
    assert sorted(perm.tolist()) == list(range(n))
    inside = torch.zeros(h, w, dtype=torch.bool)
    inside[box.r0:box.r1, box.c0:box.c1] = True
    assert torch.equal(xm[..., ~inside], x[..., ~inside])  # outside: bit-identical (invariant 4)
    assert torch.equal(xm[..., inside], x[perm][..., inside])  # inside: the partner's pixels
    assert lam_eff == 1 - inside.sum().item() / (h * w)
    fixed = perm == torch.arange(n)
    assert torch.equal(xm[fixed], x[fixed])  # invariant 6


def test_same_generator_same_box_draw_order():
    """cutmix_batch draws lambda, then the permutation, then the box centre (rows, then columns)."""
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    x = torch.randn(6, 1, 32, 32)
    _, perm, lam_eff, box, lam = cutmix_batch(x, g1)
    lam2 = sample_lambda(1.0, g2)
    perm2 = torch.randperm(6, generator=g2)
    box2 = sample_box(32, 32, lam2, g2)
    assert (lam, box) == (lam2, box2) and torch.equal(perm, perm2)


def test_statistics_of_the_effective_lambda():
    """Spec invariant 8 with 2e4 draws: E[lam_eff] = 0.70 (+-0.01; SE ~0.002), E[lam] = 0.50,
    P(lam_eff == 1) ~ 0.004 (binomial, +-4.5 sd)."""
    g = torch.Generator().manual_seed(0)
    n, s_eff, s_lam, ones = 20000, 0.0, 0.0, 0
    for _ in range(n):
        lam = sample_lambda(1.0, g)
        le = box_lambda(sample_box(32, 32, lam, g), 32, 32)
        s_eff, s_lam, ones = s_eff + le, s_lam + lam, ones + (le == 1.0)
    assert abs(s_eff / n - 0.701) < 0.01
    assert abs(s_lam / n - 0.5) < 0.01
    # P(empty box) = P(lam > 1 - (2/32)^2) = 1/256 for alpha = 1
    p = 1 / 256
    assert abs(ones - n * p) < 4.5 * math.sqrt(n * p * (1 - p))


# --------------------------------------------------------------------------- the method
def test_step_is_the_official_iteration():
    ctx = _ctx()
    m = build_method({"name": "cutmix", "alpha": 1.0, "prob": 1.0}, ctx)
    model, b = Tiny(), _batch()
    st_ = _state(ctx, 3)
    out = m.step(model, b, st_)
    # replay the draws: r, lam, perm, box
    g = torch.Generator().manual_seed(3)
    torch.rand((), generator=g)
    xm, perm, lam_eff, box, lam = cutmix_batch(b.x, g, 1.0)
    assert torch.equal(model.seen, xm) and torch.equal(out.mix.index, perm)
    assert out.mix.lam == lam_eff == out.logs["lam"] and out.logs["lam_requested"] == lam
    logits = model.fc(xm.flatten(1))
    expect = lam_eff * cross_entropy(logits, b.y) + (1 - lam_eff) * cross_entropy(logits, b.y[perm])
    assert math.isclose(out.loss.item(), expect.item(), rel_tol=1e-6)
    # one box for the whole batch (invariant 5): every changed pixel lies in the same box
    changed = (model.seen != b.x).any(0).any(0)
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[box.r0:box.r1, box.c0:box.c1] = True
    assert not bool((changed & ~inside).any())


@pytest.mark.parametrize("spec", [{"name": "cutmix", "prob": 0.0}])
def test_prob_zero_is_plain_ce(spec):
    ctx = _ctx()
    model, b = Tiny(), _batch()
    out = build_method(spec, ctx).step(model, b, _state(ctx))
    assert torch.equal(model.seen, b.x) and out.mix.lam == 1.0
    assert out.loss.item() == cross_entropy(model.fc(b.x.flatten(1)), b.y).item()


def test_lam_one_leaves_the_batch_unchanged():
    x = torch.randn(4, 3, 32, 32)
    b = box_from_center(32, 32, 1.0, 5, 7)
    assert torch.equal(paste_box(x, torch.tensor([3, 2, 1, 0]), b), x) and box_lambda(b, 32, 32) == 1.0


def test_prob_half_mixes_about_half_the_batches():
    ctx = _ctx()
    m = build_method({"name": "cutmix", "alpha": 1.0, "prob": 0.5}, ctx)
    model, b = Tiny(), _batch(n=4)
    st_ = _state(ctx, 11)
    with torch.no_grad():
        mixed = sum(m.step(model, b, st_).logs["mixed"] for _ in range(200))
    assert abs(mixed - 100) < 4 * math.sqrt(50)  # Binomial(200, 0.5), 4 sd


def test_correct_lam_false_uses_the_requested_lambda():
    ctx = _ctx()
    b = _batch()
    on = build_method({"name": "cutmix"}, ctx).step(Tiny(), b, _state(ctx, 4))
    off = build_method({"name": "cutmix", "correct_lam": False}, ctx).step(Tiny(), b, _state(ctx, 4))
    assert off.mix.lam == off.logs["lam_requested"] == on.logs["lam_requested"]
    assert on.mix.lam != off.mix.lam  # same draws; only the loss weight differs
    assert torch.equal(on.mix.index, off.mix.index)


def test_flip_pairing():
    ctx = _ctx()
    out = build_method({"name": "cutmix", "pairing": "flip"}, ctx).step(Tiny(), _batch(n=6), _state(ctx))
    assert out.mix.index.tolist() == [5, 4, 3, 2, 1, 0]
    with pytest.raises(ValueError, match="even"):
        build_method({"name": "cutmix", "pairing": "flip"}, ctx).step(Tiny(), _batch(n=5), _state(ctx))


def test_per_sample_boxes_and_lambdas():
    g = torch.Generator().manual_seed(2)
    n, h, w = 16, 12, 10
    x = torch.randn(n, 3, h, w)
    xm, perm, lam, boxes, lam_req = cutmix_per_sample(x, g, 1.0, prob=0.75)
    assert lam.shape == (n,) and len({(b.r0, b.r1, b.c0, b.c1) for b in boxes}) > 1
    for i, b in enumerate(boxes):
        inside = torch.zeros(h, w, dtype=torch.bool)
        inside[b.r0:b.r1, b.c0:b.c1] = True
        assert torch.equal(xm[i][:, ~inside], x[i][:, ~inside])
        assert torch.equal(xm[i][:, inside], x[perm[i]][:, inside])
        assert lam[i].item() == pytest.approx(1 - b.area / (h * w), abs=1e-7)
        if lam_req[i] == 1.0:
            assert b.area == 0 and lam[i] == 1.0
    # through the method: per-row lam tensor reaches the loss
    ctx = _ctx()
    model, bt = Tiny(), _batch()
    out = build_method({"name": "cutmix", "per_sample": True}, ctx).step(model, bt, _state(ctx, 1))
    lam = out.mix.lam
    logits = model.fc(model.seen.flatten(1))
    expect = (lam * cross_entropy(logits, bt.y, reduction="none")
              + (1 - lam) * cross_entropy(logits, out.mix.y_b, reduction="none")).mean()
    assert math.isclose(out.loss.item(), expect.item(), rel_tol=1e-6)


def test_per_sample_correct_lam_false():
    g = torch.Generator().manual_seed(3)
    _, _, lam, boxes, lam_req = cutmix_per_sample(torch.randn(8, 1, 16, 16), g, 1.0, 1.0, correct_lam=False)
    assert torch.equal(lam, lam_req)


@pytest.mark.parametrize("key,value", [("alpha", -1.0), ("alpha", 0.0), ("prob", 1.5), ("prob", -0.1), ("pairing", "shuffle"),
                                       ("per_sample", "yes"), ("correct_lam", 1), ("beta", 1.0)])
def test_param_validation_names_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        build_method({"name": "cutmix", key: value}, _ctx())


def test_non_image_input_is_rejected():
    ctx = _ctx()
    with pytest.raises(ConfigError, match="image"):
        build_method({"name": "cutmix"}, ctx).step(Tiny(d=4), Batch(torch.randn(4, 4), torch.zeros(4).long(),
                                                                    torch.arange(4)), _state(ctx))


# --------------------------------------------------------------------------- occlusion evaluator (common/evaluate.py)
def test_occlusion_centre_patch_position_is_exact():
    from common.evaluate import occlusion_mask, occlusion_side

    m = occlusion_mask(2, 32, 32, 0.25, "center")
    rows, cols = m[0].any(1).nonzero().flatten(), m[0].any(0).nonzero().flatten()
    assert (rows.min().item(), rows.max().item() + 1, cols.min().item(), cols.max().item() + 1) == (12, 20, 12, 20)
    assert m[0].sum().item() == 64 and torch.equal(m[0], m[1])
    m = occlusion_mask(1, 32, 32, 0.5, "center")[0]
    assert m[8:24, 8:24].all() and m.sum().item() == 256  # exactly centred: 8 px margin on every side
    assert torch.equal(m, m.flip(0)) and torch.equal(m, m.flip(1))  # symmetric about the image centre
    assert occlusion_side(10, 0.25) == 3  # 2.5 rounds half up
    assert occlusion_side(32, 0.0) == 0 and occlusion_side(32, 1.0) == 32
    m = occlusion_mask(1, 7, 9, 0.5, "center")[0]  # 4 x 5 patch at rows [1, 5), cols [2, 7)
    assert m[1:5, 2:7].all() and m.sum().item() == 20


@settings(max_examples=50, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), s=st.floats(0, 1), seed=st.integers(0, 1000))
def test_occlusion_random_patch_inside_image(h, w, s, seed):
    from common.evaluate import occlusion_mask, occlusion_side

    m = occlusion_mask(5, h, w, s, "random", torch.Generator().manual_seed(seed))
    ph, pw = occlusion_side(h, s), occlusion_side(w, s)
    assert (m.flatten(1).sum(1) == ph * pw).all()  # whole patch always inside the image
    m2 = occlusion_mask(5, h, w, s, "random", torch.Generator().manual_seed(seed))
    assert torch.equal(m, m2)


def test_occlusion_size_zero_keeps_accuracy_and_blanks_to_the_mean():
    from common.data import ArrayData, BatchTransform, Loader
    from common.evaluate import occlusion_metrics, predict

    g = torch.Generator().manual_seed(0)
    data = ArrayData(torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8, generator=g), torch.randint(0, 3, (40,), generator=g))
    loader = Loader(data, 16, BatchTransform((0.5,), (0.25,), 0, False, "cpu"))
    torch.manual_seed(0)
    model = Tiny()
    out, y = predict(model, loader)
    top1 = 100.0 * (out.argmax(1) == y).double().mean().item()
    occ = occlusion_metrics(model, loader, sizes=(0.0, 0.5, 1.0), modes=("center", "random"))
    assert occ["occ_center_0"] == occ["occ_random_0"] == top1
    # a full-size patch turns every image into the mean image: one constant prediction
    const = model(torch.zeros(1, 1, 8, 8)).argmax(1).item()
    assert occ["occ_center_100"] == occ["occ_random_100"] == 100.0 * (y == const).double().mean().item()


def test_occlusion_rejects_bad_arguments():
    from common.evaluate import occlusion_mask

    with pytest.raises(ValueError):
        occlusion_mask(1, 8, 8, 1.5, "center")
    with pytest.raises(ValueError, match="mode"):
        occlusion_mask(1, 8, 8, 0.5, "boundary")


# --------------------------------------------------------------------------- datasets
def _write_cifar100(folder: Path, n_train=20, n_test=10):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", n_train), ("test", n_test)):
        d = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "fine_labels": rng.integers(0, 100, n).tolist(),
             "coarse_labels": rng.integers(0, 20, n).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(d, f, protocol=2)
    return d


def test_cifar100_from_python_batches(tmp_path, monkeypatch):
    from common.data import prepare_splits

    monkeypatch.setenv("MIXREPRO_CACHE", str(tmp_path / "cache"))

    d = _write_cifar100(tmp_path / "cifar100" / "cifar-100-python")
    s = prepare_splits({"name": "cifar100", "root": str(tmp_path)})
    assert s.num_classes == 100 and s.train.x.shape == (20, 3, 32, 32) and s.test.x.shape == (10, 3, 32, 32)
    assert s.test.y.tolist() == [int(v) for v in d["fine_labels"]]
    assert torch.equal(s.test.x[0], torch.from_numpy(d["data"][0].reshape(3, 32, 32)))
    assert list((tmp_path / "cache").glob("cifar100-*.npz"))
    s2 = prepare_splits({"name": "cifar100", "root": str(tmp_path)})  # from the cache
    assert torch.equal(s2.train.x, s.train.x)


def test_cifar100_missing_names_the_files(tmp_path):
    from common.data import DataError, prepare_splits

    with pytest.raises(DataError, match="cifar-100-python"):
        prepare_splits({"name": "cifar100", "root": str(tmp_path)})


def test_imagenet_imagefolder_lazy(tmp_path):
    from PIL import Image

    from common.data import DataError, prepare_splits

    rng = np.random.default_rng(0)
    for split, per in (("train", 3), ("val", 2)):
        for c in ("n02", "n01"):
            (tmp_path / "imagenet" / split / c).mkdir(parents=True)
            for i in range(per):
                hw = (int(rng.integers(20, 60)), int(rng.integers(20, 60)))
                Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(tmp_path / "imagenet" / split / c / f"{i}.png")
    s = prepare_splits({"name": "imagenet", "root": str(tmp_path), "options": {"image_size": 16, "resize": 18}})
    assert s.num_classes == 2 and s.is_image and s.input_shape == (3, 16, 16)
    assert len(s.train) == 6 and len(s.test) == 4
    assert s.train.y.tolist() == [0, 0, 0, 1, 1, 1]  # sorted class folders: n01 -> 0, n02 -> 1
    x = s.train.x[torch.tensor([0, 5])]
    assert x.dtype == torch.uint8 and x.shape == (2, 3, 16, 16)
    sub = s.train.subset([1, 2])  # stays lazy
    assert len(sub) == 2 and torch.equal(sub.x[torch.tensor([0])], s.train.x[torch.tensor([1])])
    with pytest.raises(DataError, match="imagenet"):
        prepare_splits({"name": "imagenet", "root": str(tmp_path / "nowhere")})


# --------------------------------------------------------------------------- PyramidNet and paper-scale configs
def test_pyramidnet_parameter_counts_match_the_papers():
    from papers.cutmix.pyramidnet import PyramidNet

    def count(m):
        return sum(p.numel() for p in m.parameters()) / 1e6

    assert count(PyramidNet(100, (3, 32, 32), 200, 240, True)) == pytest.approx(26.8, abs=0.1)  # CutMix Sec. 4.1.2
    assert count(PyramidNet(100, (3, 32, 32), 110, 48, False)) == pytest.approx(1.7, abs=0.1)  # PyramidNet Table 4
    small = PyramidNet(10, (3, 32, 32), 20, 24, True)
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ConfigError, match="depth"):
        PyramidNet(10, (3, 32, 32), 21, 24, True)


def _paper_configs():
    exp = load_experiments(ROOT / "papers" / "cutmix" / "experiments.yaml")
    seen, out = set(), []
    for cfg in expand_grid(exp, "paper", "cutmix"):
        key = (cfg["dataset"]["name"], cfg["model"]["name"])
        if key not in seen:
            seen.add(key)
            out.append(cfg)
    return out


def test_paper_configs_are_the_paper_recipes():
    cfgs = {c["dataset"]["name"]: c for c in _paper_configs()}
    c = cfgs["cifar100"]
    assert c["model"] == {"name": "pyramidnet", "depth": 200, "alpha": 240, "bottleneck": True}
    t = c["train"]
    assert (t["epochs"], t["batch_size"], t["lr"], t["milestones"], t["nesterov"], t["weight_decay"]) == \
        (300, 64, 0.25, [150, 225], True, 1e-4)
    assert c["resources"]["gpus"] == 2
    i = cfgs["imagenet"]
    assert i["model"]["name"] == "timm:resnet50" and i["train"]["milestones"] == [75, 150, 225]
    assert i["resources"]["gpus"] == 4
    methods = [c["method"] for c in expand_grid(load_experiments(ROOT / "papers/cutmix/experiments.yaml"), "paper", "x")]
    assert {"name": "cutmix", "alpha": 1.0, "prob": 0.5} in methods and {"name": "cutmix", "alpha": 1.0, "prob": 1.0} in methods
