"""Cross-paper grid invariants: the papers that compare against the same baselines on the same
setting must resolve to the *same* runs, so a baseline is trained once and every paper's table
reads it (the workflow's sharing is by config hash, so one differing key silently doubles the work).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from common.config import plan

ROOT = Path(__file__).resolve().parent.parent


def _shared_cpu_papers() -> tuple[str, ...]:
    """Papers whose cpu grid trains one of the shared CIFAR-10 / ResNet-20 baselines (found, not
    listed, so a new paper on that setting is covered without editing this file); CutMix first."""
    _, by_paper = plan("cpu", ROOT)
    shared = tuple(f"{m}-cifar10-resnet20-" for m in ("erm", "mixup", "cutmix"))
    found = sorted(p for p, ids in by_paper.items() if any(r.startswith(shared) for r in ids))
    return tuple(sorted(found, key=lambda p: p != "cutmix"))


SHARED_CPU = _shared_cpu_papers()


def _regime(cfg: dict) -> tuple:
    """What a paper may deliberately change to open a second setting: training images and epochs (e.g.
    RankMixup's calibration arm). Within one regime, a differing key is a mistake."""
    return cfg["dataset"].get("train_size"), cfg["train"]["epochs"]


def _variants(scale: str, papers) -> dict[tuple, set[str]]:
    """('<method>-<dataset>-<model>-s<seed>', regime) -> the config hashes the papers' grids give it."""
    configs, by_paper = plan(scale, ROOT, list(papers))
    out: dict[tuple, set[str]] = defaultdict(set)
    for rids in by_paper.values():
        for rid in rids:
            stem, h = rid.rsplit("-", 1)
            out[stem, _regime(configs[rid])].add(h)
    return out


def test_cpu_baselines_are_shared_across_papers():
    assert SHARED_CPU[0] == "cutmix" and len(SHARED_CPU) >= 4  # cutmix, decoupled_mixup, rankmixup, resizemix
    configs, by_paper = plan("cpu", ROOT, list(SHARED_CPU))
    assert set(by_paper) == set(SHARED_CPU)
    variants = _variants("cpu", SHARED_CPU)
    for method in ("erm", "mixup", "cutmix"):
        stems = [k for k in variants if k[0].startswith(f"{method}-cifar10-resnet20-")]
        assert len(stems) >= 3, method  # >= 3 seeds
        for k in stems:
            assert len(variants[k]) == 1, f"{k}: the papers' cpu grids differ ({sorted(variants[k])})"
    # in the shared regime, the baselines the other papers compare against are literally the CutMix paper's runs
    cut = set(by_paper["cutmix"])
    shared = {_regime(configs[r]) for r in cut}
    assert len(shared) == 1
    for paper in SHARED_CPU[1:]:
        base = {r for r in by_paper[paper] if r.split("-")[0] in ("erm", "mixup", "cutmix")
                and _regime(configs[r]) in shared}
        assert base and base <= cut, paper


@pytest.mark.parametrize("scale", ["quick", "cpu"])
def test_transmix_and_mixpro_share_the_deit_baseline(scale):
    _, by_paper = plan(scale, ROOT, ["transmix", "mixpro"])
    t, m = set(by_paper["transmix"]), set(by_paper["mixpro"])
    assert t & m, "the DeiT-mixing baseline (and TransMix) should be one set of runs for both papers"


def test_unknown_paper_name_is_an_error():
    from common.config import ConfigError

    with pytest.raises(ConfigError, match=r"unknown paper 'cutmx'\. Did you mean 'cutmix'.*Known papers:.*resizemix"):
        plan("quick", ROOT, ["cutmx"])
