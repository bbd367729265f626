"""C-Mixup (papers/c_mixup) and the regression track (papers/c_mixup/data.py, regression metrics).

Worked numbers are hand-computed from the paper's kernel and the official code's splits."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from papers.c_mixup import data as rd
from common.config import resolve, validate_run_config
from common.data import DataError
from common.evaluate import regression_metrics
from common.methods import Batch, ConfigError, RunContext, TrainState, build_method
from common.mixing import sample_lambda
from common.train import train
from papers.c_mixup.lstnet import LSTNet
from papers.c_mixup.method import (
    KernelPartnerSampler,
    UniformPartnerSampler,
    pair_probabilities,
    sample_from_rows,
)

DATA = Path(os.environ.get("MIXREPRO_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
needs = lambda rel: pytest.mark.skipif(not (DATA / rel).exists(), reason=f"{DATA / rel} not available")  # noqa: E731

Y4 = torch.tensor([0.0, 0.5, 1.0, 3.0])


# --------------------------------------------------------------------------- spec worked probabilities
def test_example_a_self_pairs_kept():
    want = torch.tensor([[0.399978, 0.352979, 0.242599, 0.004443],
                         [0.314175, 0.356007, 0.314175, 0.015642],
                         [0.231115, 0.336271, 0.381045, 0.051569],
                         [0.009332, 0.036910, 0.113691, 0.840067]], dtype=torch.float64)
    assert torch.allclose(pair_probabilities(Y4, 1.0), want, atol=1e-6, rtol=0)


def test_example_a_prime_self_excluded():
    want = torch.tensor([[0.000000, 0.588278, 0.404317, 0.007405],
                         [0.487856, 0.000000, 0.487856, 0.024289],
                         [0.373396, 0.543288, 0.000000, 0.083316],
                         [0.058351, 0.230784, 0.710865, 0.000000]], dtype=torch.float64)
    p = pair_probabilities(Y4, 1.0, exclude_self=True)
    assert torch.allclose(p, want, atol=1e-6, rtol=0)
    assert torch.all(p.diagonal() == 0)


def test_example_b_sigma_half():
    want = torch.tensor([[0.574097, 0.348207, 0.077696, 8.74e-09],
                         [0.274068, 0.451862, 0.274068, 1.68e-06],
                         [0.077681, 0.348140, 0.573986, 0.000193],
                         [1.52e-08, 3.73e-06, 0.000335, 0.999661]], dtype=torch.float64)
    assert torch.allclose(pair_probabilities(Y4, 0.5), want, atol=1e-6, rtol=0)


def test_example_c_and_d():
    assert (pair_probabilities(Y4, 100.0) - 0.25).abs().max() < 1e-4
    want = torch.tensor([[0.574097, 0.348207, 0.077696],
                         [0.359188, 0.592201, 0.048611],
                         [0.111166, 0.067425, 0.821409]], dtype=torch.float64)
    y2 = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    assert torch.allclose(pair_probabilities(y2, 1.0), want, atol=1e-6, rtol=0)


def test_example_e_identity_without_nan():
    p = pair_probabilities(torch.tensor([0.0, 10.0, 20.0]), 0.1)
    assert not torch.isnan(p).any()
    assert torch.equal(p, torch.eye(3, dtype=torch.float64))


# --------------------------------------------------------------------------- invariants (hypothesis)
labels = st.lists(st.floats(-50, 50, allow_nan=False, width=32), min_size=2, max_size=12)


@settings(max_examples=30, deadline=None)
@given(labels, st.floats(0.05, 20.0), st.floats(-100, 100))
def test_rows_are_distributions_with_diagonal_max_and_translation_invariance(ys, sigma, shift):
    y = torch.tensor(ys, dtype=torch.float64)
    p = pair_probabilities(y, sigma)
    assert torch.all(p >= 0) and torch.allclose(p.sum(1), torch.ones(len(ys), dtype=torch.float64), atol=1e-12)
    assert torch.all(p.diagonal() >= p.max(1).values - 1e-15)  # P(i|i) is the row maximum
    assert torch.allclose(pair_probabilities(y + shift, sigma), p, atol=1e-9)


@settings(max_examples=20, deadline=None)
@given(labels, st.floats(0.1, 10.0), st.randoms(use_true_random=False))
def test_permutation_equivariance(ys, sigma, rnd):
    y = torch.tensor(ys, dtype=torch.float64)
    perm = list(range(len(ys)))
    rnd.shuffle(perm)
    perm = torch.tensor(perm)
    assert torch.allclose(pair_probabilities(y[perm], sigma), pair_probabilities(y, sigma)[perm][:, perm], atol=1e-12)


# --------------------------------------------------------------------------- limits
def test_bandwidth_to_zero_draws_only_self_pairs():
    y = torch.randn(200, generator=torch.Generator().manual_seed(0))  # distinct labels
    s = KernelPartnerSampler(y, 1e-6)
    anchors = torch.randint(0, 200, (500,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(s.sample(anchors, torch.Generator().manual_seed(2)), anchors)
    assert s.mean_self_probability() == pytest.approx(1.0)


def test_bandwidth_to_infinity_gives_uniform_partners():
    y = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    p = pair_probabilities(y, 1e7)
    assert (p - 1 / 50).abs().max() < 1e-12
    draws = KernelPartnerSampler(y, 1e7).sample(torch.zeros(20000, dtype=torch.long), torch.Generator().manual_seed(3))
    counts = torch.bincount(draws, minlength=50).double()
    chi2 = ((counts - 400) ** 2 / 400).sum().item()
    assert chi2 < 86.7  # chi-square 49 dof, p = 0.001


def test_sampling_frequencies_match_the_row():
    p_row = pair_probabilities(Y4, 1.0)[0]
    draws = KernelPartnerSampler(Y4, 1.0).sample(torch.zeros(40000, dtype=torch.long), torch.Generator().manual_seed(0))
    expect = p_row * 40000
    counts = torch.bincount(draws, minlength=4).double()
    chi2 = ((counts - expect) ** 2 / expect).sum().item()
    assert chi2 < 16.27  # 3 dof, p = 0.001


def test_inverse_cdf_never_returns_zero_probability_entries():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.5, 0.0]] * 5000, dtype=torch.float64)
    j = sample_from_rows(probs, torch.Generator().manual_seed(0))
    assert set(j.tolist()) == {1, 3}


# --------------------------------------------------------------------------- determinism and chunking
def test_sampler_is_deterministic_under_a_seed():
    y = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    s = KernelPartnerSampler(y, 0.5)
    anchors = torch.arange(64)
    a = s.sample(anchors, torch.Generator().manual_seed(7))
    b = s.sample(anchors, torch.Generator().manual_seed(7))
    c = s.sample(anchors, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    u = UniformPartnerSampler(300)
    assert torch.equal(u.sample(anchors, torch.Generator().manual_seed(7)), u.sample(anchors, torch.Generator().manual_seed(7)))


def test_chunked_rows_equal_dense():
    y = torch.randn(129, 3, generator=torch.Generator().manual_seed(0))
    dense = pair_probabilities(y, 0.7, chunk_elems=1 << 30)  # all rows in one chunk
    for chunk in (1, 129 * 3 * 5, 129 * 3 * 64):  # 1 row, 5 rows, 64 rows per chunk
        assert torch.equal(pair_probabilities(y, 0.7, chunk_elems=chunk), dense)
    rows = torch.tensor([5, 0, 128, 5])
    assert torch.equal(pair_probabilities(y, 0.7, rows=rows, chunk_elems=1), dense[rows])
    a = KernelPartnerSampler(y, 0.7, chunk_elems=1).sample(torch.arange(129), torch.Generator().manual_seed(1))
    b = KernelPartnerSampler(y, 0.7, chunk_elems=1 << 30).sample(torch.arange(129), torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


# --------------------------------------------------------------------------- the step
class Recorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen = None

    def forward(self, x):
        self.seen = x.detach().clone()
        return x.sum(1, keepdim=True) * 0 + self.w


def _ctx(x, y):
    from common.data import ArrayData

    data = ArrayData(x, y)
    return RunContext("regression", y.shape[1], tuple(x.shape[1:]), torch.device("cpu"), data,
                      lambda idx, g=None: data.x[torch.as_tensor(idx)])


def _state(ctx, seed):
    return TrainState(0, 0, 1, 1, torch.Generator().manual_seed(seed), ctx)


def test_step_mixes_anchor_with_drawn_partner_and_one_lambda():
    x = torch.tensor([[1.0, 2.0], [3.0, -2.0], [0.0, 5.0]])
    y = torch.tensor([[10.0], [20.0], [40.0]])
    ctx = _ctx(x, y)
    m = build_method({"name": "c_mixup", "alpha": 2.0, "bandwidth": 8.0}, ctx)
    model = Recorder()
    m.setup(model)
    batch = Batch(x[[0, 2]], y[[0, 2]], torch.tensor([0, 2]))
    out = m.step(model, batch, _state(ctx, 5))
    g = torch.Generator().manual_seed(5)  # replay the same draws
    lam = sample_lambda(2.0, g)
    j = KernelPartnerSampler(y, 8.0).sample(torch.tensor([0, 2]), g)
    assert out.mix.lam == lam and torch.equal(out.mix.index, j)
    assert torch.allclose(model.seen, lam * x[[0, 2]] + (1 - lam) * x[j])
    target = lam * y[[0, 2]] + (1 - lam) * y[j]
    assert out.loss.item() == pytest.approx(((0 - target) ** 2).mean().item(), rel=1e-6)


def test_spec_mixing_example():
    lam, xi, xj = 0.3, torch.tensor([1.0, 2.0]), torch.tensor([3.0, -2.0])
    assert torch.allclose(lam * xi + (1 - lam) * xj, torch.tensor([2.4, -0.8]))
    assert lam * 10 + (1 - lam) * 20 == pytest.approx(17.0)


def test_tiny_bandwidth_step_is_erm():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 5, generator=g), torch.randn(40, 1, generator=g)
    ctx = _ctx(x, y)
    from common.models import MLP

    model = MLP(1, (5,))
    batch = Batch(x[:16], y[:16], torch.arange(16))
    for layer in (0, 1):
        m = build_method({"name": "c_mixup", "bandwidth": 1e-6, "layer": layer}, ctx)
        m.setup(model)
        out = m.step(model, batch, _state(ctx, 1))
        assert torch.equal(out.mix.index, torch.arange(16))
        erm = torch.nn.functional.mse_loss(model(batch.x), batch.y)
        assert out.loss.item() == pytest.approx(erm.item(), rel=1e-5)
        assert m.epoch_end(None)["self_pair_rate"] == 1.0


def test_params_are_validated_and_name_the_key():
    ctx = _ctx(torch.zeros(4, 2), torch.zeros(4, 1))
    for spec, key in [({"bandwidth": 0.0}, "bandwidth"), ({"alpha": 0.0}, "alpha"), ({"layer": -1}, "layer"),
                      ({"chunk_elems": 0}, "chunk_elems"), ({"sigma": 1.0}, "sigma")]:
        with pytest.raises(ConfigError, match=key):
            build_method({"name": "c_mixup", **spec}, ctx)
    with pytest.raises(ConfigError, match="layer"):
        build_method({"name": "manifold_mixup_global", "layer": 0}, ctx)
    with pytest.raises(ConfigError, match="regression"):
        build_method("c_mixup", RunContext("classification", 3, (2,), torch.device("cpu"), None, None))
    m = build_method({"name": "mixup_global", "layer": 1}, ctx)
    with pytest.raises(ConfigError, match="forward_mix"):
        m.setup(torch.nn.Linear(2, 1))


# --------------------------------------------------------------------------- metrics
def test_rmse_mape_spec_examples():
    m = regression_metrics(torch.tensor([1.1, 1.9, 3.3, 0.5]), torch.tensor([1.0, 2.0, 3.0, 0.0]))
    assert m["rmse"] == pytest.approx(0.3, abs=1e-7)
    assert m["mape"] == pytest.approx(8.333333, abs=1e-5)  # y = 0 entry skipped for MAPE only
    m2 = regression_metrics(torch.tensor([[0.5, 1.0], [2.0, 2.0]]), torch.tensor([[1.0, 1.0], [2.0, 4.0]]))
    assert m2["rmse"] == pytest.approx(1.0307764, abs=1e-7)
    assert m2["mape"] == pytest.approx(25.0, abs=1e-9)


# --------------------------------------------------------------------------- models
def test_lstnet_shapes_and_mixing_points():
    torch.manual_seed(0)
    net = LSTNet(3, (30, 3), hid_cnn=4, hid_rnn=5, hid_skip=2, kernel=3, skip=6, highway=5, dropout=0.2).eval()
    xa, xb = torch.randn(4, 30, 3), torch.randn(4, 30, 3)
    assert net(xa).shape == (4, 3)
    assert torch.allclose(net.forward_mix(xa, xb, 0.3, 0), net(0.3 * xa + 0.7 * xb))
    assert torch.allclose(net.forward_mix(xa, xb, 1.0, 1), net(xa), atol=1e-6)
    # layer 1 mixes conv features, not inputs: differs from input mixing (ReLU is non-linear)
    assert not torch.allclose(net.forward_mix(xa, xb, 0.5, 1), net.forward_mix(xa, xb, 0.5, 0))
    with pytest.raises(ConfigError):
        net.forward_mix(xa, xb, 0.5, 2)


def test_time_series_windows_alignment():
    series = np.arange(40, dtype=np.float64).reshape(20, 2)  # row t = [2t, 2t+1]
    x, y = rd.time_series_windows(series, range(7, 10), window=4, horizon=3)
    assert x.shape == (3, 4, 2) and y.shape == (3, 2)
    # target row 7: input rows 1..4 (the last one h=3 steps before the target)
    assert x[0, :, 0].tolist() == [2, 4, 6, 8] and y[0].tolist() == [14, 15]


def test_domain_split_keeps_domains_apart():
    dom = np.repeat([3, 1, 2, 5, 4], [10, 50, 20, 15, 5])
    tr, va, te = rd.domain_split(dom, 0.7, 0.1)
    sets = [set(dom[i]) for i in (tr, va, te)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert len(tr) + len(va) + len(te) == 100
    # ids 1..5 have 50, 20, 10, 5, 15 rows (cumulative 50, 70, 80, 85, 100): domain 2 is the first to
    # reach int(0.7 N) = 70, so (official rule) it opens the validation split; 3 reaches 70 + 10
    assert sets[0] == {1} and sets[1] == {2} and sets[2] == {3, 4, 5}


# --------------------------------------------------------------------------- data files: missing, download
def test_missing_file_error_names_the_exact_path(tmp_path):
    with pytest.raises(DataError) as e:
        rd.load_airfoil(root=str(tmp_path), download=False)
    assert str(tmp_path / "airfoil" / "airfoil_self_noise.dat") in str(e.value)
    with pytest.raises(DataError) as e:
        rd.load_exchange_rate(root=str(tmp_path), download=False)
    assert str(tmp_path / "exchange_rate" / "exchange_rate.txt.gz") in str(e.value)
    assert str(tmp_path / "exchange_rate" / "exchange_rate.txt") in str(e.value)


@contextlib.contextmanager
def local_server(directory: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_download_from_local_server(tmp_path, monkeypatch):
    serve = tmp_path / "serve"
    serve.mkdir()
    rng = np.random.default_rng(0)
    rows = np.column_stack([rng.uniform(0, 1, (1503, 5)), rng.uniform(100, 140, 1503)])
    body = "".join("\t".join(f"{v:.6g}" for v in r) + "\r\n" for r in rows).encode()
    (serve / "airfoil.dat").write_bytes(body)
    root = tmp_path / "root"
    with local_server(serve) as url:
        # plain helper: right checksum saves, wrong checksum and 404 raise and save nothing
        dest = tmp_path / "x" / "a.dat"
        rd.download_file(f"{url}/airfoil.dat", dest, hashlib.sha256(body).hexdigest())
        assert dest.read_bytes() == body
        bad = tmp_path / "x" / "b.dat"
        with pytest.raises(DataError, match="sha256"):
            rd.download_file(f"{url}/airfoil.dat", bad, "0" * 64)
        assert not bad.exists()
        with pytest.raises(DataError, match="failed"):
            rd.download_file(f"{url}/nope.dat", bad)
        assert not bad.exists()
        # the loader fetches into <root>/airfoil/airfoil_self_noise.dat when allowed
        src = rd.SOURCES["airfoil"]
        monkeypatch.setitem(rd.SOURCES, "airfoil", rd.Source(src.paths, f"{url}/airfoil.dat", src.page,
                                                             hashlib.sha256(body).hexdigest()))
        s = rd.load_airfoil(root=str(root), download=True)
    assert (root / "airfoil" / "airfoil_self_noise.dat").read_bytes() == body
    assert (len(s.train), len(s.val), len(s.test)) == (1003, 300, 200)
    assert s.train.x.dtype == torch.float32 and s.train.y.shape == (1003, 1) and s.num_classes == 1


def test_no2_prefers_the_authors_npy_split(tmp_path):
    d = tmp_path / "no2"
    d.mkdir()
    sizes = {"train": 6, "valid": 2, "test": 3}
    for k, n in sizes.items():
        np.save(d / f"x_{k}.npy", np.full((n, 7), n, dtype=np.float64))
        np.save(d / f"y_{k}.npy", np.full((n, 1), -n, dtype=np.float64))
    s = rd.load_no2(root=str(tmp_path))
    assert (len(s.train), len(s.val), len(s.test)) == (6, 2, 3)
    assert s.val.y.flatten().tolist() == [-2.0, -2.0]
    with pytest.raises(DataError, match="547_no2.tsv.gz"):
        rd.load_no2(root=str(tmp_path), source="pmlb")


# --------------------------------------------------------------------------- real files (skip when absent)
@needs("airfoil/airfoil_self_noise.dat")
def test_airfoil_split_is_the_official_seed_permutation():
    s = rd.load_airfoil(root=str(DATA), shuffle_seed=3)
    raw = np.loadtxt(DATA / "airfoil" / "airfoil_self_noise.dat")
    np.random.seed(3)  # what the official script's set_seed(3) + np.random.permutation does
    perm = np.random.permutation(1503)
    assert np.allclose(s.test.y.numpy().ravel(), raw[perm[1303:], 5].astype(np.float32))
    assert s.train.x.min() >= 0 and s.train.x.max() <= 1


@needs("skillcraft/SkillCraft1_Dataset.csv")
def test_skillcraft_league_split():
    s = rd.load_skillcraft(root=str(DATA))
    assert (len(s.train), len(s.val), len(s.test)) == (1878, 806, 711)  # leagues 1-4 / 5 / 6-8
    assert s.input_shape == (17,) and not torch.isnan(s.train.x).any()


def test_best_val_is_accepted_without_val_size_for_regression_sets():
    for name in ("diabetes", "airfoil", "no2", "exchange_rate", "communities", "skillcraft", "electricity"):
        assert validate_run_config(resolve({"dataset": {"name": name}, "model": {"name": "mlp"},
                                            "train": {"select": "best_val"}})) is None
    # the check is live: a dataset without its own validation split needs dataset.val_size
    with pytest.raises(ConfigError, match="val_size"):
        validate_run_config(resolve({"dataset": {"name": "digits"}, "model": {"name": "resnet8"},
                                     "train": {"select": "best_val"}}))


# --------------------------------------------------------------------------- end to end
def _cfg(method, **over):
    cfg = resolve({"dataset": {"name": "diabetes"}, "model": {"name": "mlp"}, "method": method,
                   "train": {"epochs": 1, "batch_size": 32, "optimizer": "adam", "lr": 0.01, "weight_decay": 0.0,
                             "schedule": "constant", "select": "best_val", "drop_last": True, "num_threads": 1},
                   "eval": {"temperature_scaling": False, "occlusion": None}})
    from common.config import set_dotted

    for k, v in over.items():
        cfg = set_dotted(cfg, k, v)
    return cfg


@pytest.mark.parametrize("method", ["erm", {"name": "mixup_global", "alpha": 2.0},
                                    {"name": "manifold_mixup_global", "alpha": 2.0},
                                    {"name": "c_mixup", "alpha": 2.0, "bandwidth": 20.0, "layer": 1}])
def test_end_to_end_on_diabetes(tmp_path, method):
    # 30 epochs learn: every method's test RMSE is well below the target's spread (the RMSE of a
    # constant prediction at the mean; ~77), where 1 epoch is still at ~150
    from sklearn.datasets import load_diabetes

    with contextlib.redirect_stdout(io.StringIO()):
        r = train(_cfg(method, **{"train.epochs": 30}), tmp_path / "run")
    assert r["task"] == "regression" and np.isfinite(r["test"]["mape"])
    assert r["test"]["rmse"] < 0.8 * load_diabetes().target.std()
    assert r["provenance"]["dataset_sizes"] == {"train": 265, "val": 88, "test": 89}


def test_best_val_ties_go_to_the_later_epoch(tmp_path):
    # lr so small that float32 weights never change: every epoch has the same validation RMSE
    with contextlib.redirect_stdout(io.StringIO()):
        r = train(_cfg("erm", **{"train.epochs": 3, "train.lr": 1e-30}), tmp_path / "run")
    assert r["selected_epoch"] == 3


@needs("exchange_rate/exchange_rate.txt.gz")
def test_end_to_end_lstnet_exchange_rate_small(tmp_path):
    cfg = _cfg({"name": "c_mixup", "alpha": 1.5, "bandwidth": 0.05, "layer": 1},
               **{"dataset": {"name": "exchange_rate", "root": str(DATA), "train_size": 256, "test_size": 128,
                              "options": {"window": 48}},
                  "model": {"name": "lstnet", "hid_cnn": 8, "hid_rnn": 8, "skip": 24, "highway": 24},
                  "train.batch_size": 128, "train.lr": 0.001, "eval.batch_size": 2000})
    with contextlib.redirect_stdout(io.StringIO()):
        r = train(cfg, tmp_path / "run")
    assert np.isfinite(r["test"]["rmse"]) and r["last_epoch"]["train_expected_self_rate"] > 0
