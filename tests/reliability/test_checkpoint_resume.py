"""Which checkpoint a run resumes: only one written by the same config AND the same code, in the
current format, of a run that has not finished yet. Everything else starts fresh, saying why.
"""
from __future__ import annotations

import torch

from rel_helpers import assert_same_run, epochs, metrics, tiny, write_config

from common.config import resolve


def test_deleting_metrics_json_retrains_from_scratch(tmp_path, capsys):
    """A finished run's final checkpoint is not resumed (that would train 0 epochs and report the
    old model again): the rerun trains every epoch and gives the same numbers."""
    from common.train import train

    cfg, out, ckpt = resolve(tiny(**{"train.epochs": 2})), tmp_path / "runs" / "r", tmp_path / "ckpt"
    first = train(cfg, out, ckpt, progress=False)
    rows = epochs(out)
    (out / "metrics.json").unlink()
    capsys.readouterr()
    second = train(cfg, out, ckpt, progress=False)
    log = capsys.readouterr().out
    assert "resumed from" not in log and "already finished" in log, log
    assert second["provenance"]["resumed_from_epoch"] == 0
    assert metrics(out)["test"] == first["test"] and epochs(out) == rows


def test_killed_during_final_evaluation_still_resumes(tmp_path, reference, capsys):
    """The end state of a run that never wrote metrics.json (``--stop-after-epoch`` = all epochs, as
    a kill during the final evaluation) is resumed: only the evaluation is redone."""
    from common.train import train

    cfg, out, ckpt = resolve(tiny()), tmp_path / "runs" / "r", tmp_path / "ckpt"
    assert train(cfg, out, ckpt, stop_after_epoch=3, progress=False) is None
    capsys.readouterr()
    train(cfg, out, ckpt, progress=False)
    assert "at epoch 3" in capsys.readouterr().out
    assert metrics(out)["provenance"]["resumed_from_epoch"] == 3
    assert_same_run(out, reference)


def test_checkpoint_of_other_code_is_not_resumed(tmp_path, reference, capsys):
    from common.train import train

    cfg, out, ckpt = resolve(tiny()), tmp_path / "runs" / "r", tmp_path / "ckpt"
    train(cfg, out, ckpt, stop_after_epoch=1, progress=False)
    state = torch.load(ckpt / "last.pt", weights_only=True)
    state["code_digest"] = "0123456789abcdef"  # as written before a change to the method's code
    torch.save(state, ckpt / "last.pt")
    capsys.readouterr()
    train(cfg, out, ckpt, progress=False)
    log = capsys.readouterr().out
    assert "resumed from" not in log and "other code" in log and "0123456789abcdef" in log, log
    assert metrics(out)["provenance"]["resumed_from_epoch"] == 0
    assert_same_run(out, reference)


def test_older_checkpoint_format_starts_fresh_with_a_message(tmp_path, reference, capsys):
    """A checkpoint missing keys (here 'scaler', as from an older trainer) is not a one-word
    ``error: 'scaler'``: the CLI says it is incompatible and trains from scratch."""
    from common.train import main, train

    cfg = write_config(tmp_path / "run.yaml", tiny())
    out, ckpt = tmp_path / "runs" / "r", tmp_path / "ckpt"
    train(resolve(tiny()), out, ckpt, stop_after_epoch=1, progress=False)
    state = torch.load(ckpt / "last.pt", weights_only=True)
    del state["scaler"]
    torch.save(state, ckpt / "last.pt")
    capsys.readouterr()
    assert main(["--config", str(cfg), "--out", str(out), "--ckpt-dir", str(ckpt)]) == 0
    log = capsys.readouterr().out
    assert "older, incompatible format" in log and "'scaler'" in log and "resumed from" not in log, log
    assert_same_run(out, reference)


def test_checkpoint_that_is_not_a_dict_is_ignored(tmp_path, capsys):
    from common.checkpoint import load_checkpoint

    torch.save(torch.zeros(3), tmp_path / "last.pt")
    assert load_checkpoint(tmp_path, resolve(tiny())) == (None, None)
    assert "not a checkpoint of this trainer" in capsys.readouterr().out


def test_corrupt_last_is_quarantined_and_never_rotated_over_the_good_prev(tmp_path):
    """After ``load_checkpoint`` fell back to prev.pt, the next save must not move the corrupt
    last.pt over prev.pt: the corrupt file is set aside as ``last.pt.corrupt``."""
    import pytest

    from common.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint(tmp_path, {"epoch": 0, "w": torch.zeros(3)})
    save_checkpoint(tmp_path, {"epoch": 1, "w": torch.ones(3)})
    data = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match="unreadable"):
        ck, path = load_checkpoint(tmp_path)
    assert ck["epoch"] == 0 and path.name == "prev.pt"
    assert (tmp_path / "last.pt.corrupt").read_bytes() == data[: len(data) // 2]
    save_checkpoint(tmp_path, {"epoch": 1, "w": torch.ones(3)})
    assert torch.load(tmp_path / "prev.pt", weights_only=True)["epoch"] == 0  # still the good one
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1
    save_checkpoint(tmp_path, {"epoch": 2, "w": torch.ones(3)})
    assert torch.load(tmp_path / "prev.pt", weights_only=True)["epoch"] == 1


def test_property_saves_loads_and_truncations_never_lose_the_newest_good_checkpoint():
    """Any sequence of saves, truncations of last.pt (a full disk, a copy cut short) and loads:
    ``load_checkpoint`` returns the newest state that is still intact, and prev.pt never holds a
    truncated file (only last.pt is ever damaged here)."""
    import tempfile
    import warnings
    from pathlib import Path

    from hypothesis import HealthCheck, given, settings, strategies as st

    from common.checkpoint import load_checkpoint, save_checkpoint

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.sampled_from(["save", "truncate", "load"]), max_size=14))
    def run(ops):
        with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = Path(d)
            last = prev = None  # the model: state number, "bad" (truncated) or None (absent)
            n = 0
            for op in ops:
                if op == "save":
                    n += 1
                    save_checkpoint(d, {"n": n})
                    if last not in (None, "bad"):
                        prev = last
                    last = n
                elif op == "truncate" and last is not None:
                    data = (d / "last.pt").read_bytes()
                    (d / "last.pt").write_bytes(data[: len(data) // 2])
                    last = "bad"
                elif op == "load":
                    ck, path = load_checkpoint(d)
                    if last == "bad":
                        last = None  # set aside as last.pt.corrupt
                    want = last if last is not None else prev
                    assert (ck or {}).get("n") == want
                assert prev != "bad"
                if prev is not None:
                    assert torch.load(d / "prev.pt", weights_only=True)["n"] == prev

    run()
