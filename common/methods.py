"""The method interface: what a mixing method sees and returns at each training step.

A method is a class registered by name with :func:`register_method`. Per step the trainer calls
``method.step(model, batch, state)`` and back-propagates the returned ``StepOutput.loss``.
Everything a mixup-family method needs is reachable from there:

* mix inputs / choose partners: primitives in :mod:`common.mixing`, drawing from
  ``state.generator`` (a seeded CPU generator, replayed exactly on resume);
* partners from the whole training set: ``state.ctx.train`` holds the training split and
  ``state.ctx.fetch(indices)`` returns those samples ready for the model (C-Mixup);
* targets from the model's own outputs: ``setup(model, ctx)`` runs once after the model is built,
  e.g. to install a forward hook for attention maps (TransMix, MixPro);
* several forward passes: call ``model`` as often as needed (RankMixup);
* extra loss terms: a :class:`LossTerm` composes with any method that reports
  ``StepOutput.mix = MixInfo(y_a, y_b, lam, ...)``, selected as ``"<method>+<term>"``
  (e.g. ``"cutmix+dm"``).

Parameters are a dataclass per method (``Params``): unknown keys are rejected with a
did-you-mean suggestion, and ``Params.__post_init__`` checks ranges, naming the key.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn

from .batch import Batch  # noqa: F401  (part of the method interface)
from .errors import ConfigError  # noqa: F401  (papers raise it from here)
from .losses import cross_entropy, mixed_cross_entropy, mixed_mse
from .registry import Registry, did_you_mean

METHODS: Registry = Registry("method")


# --------------------------------------------------------------------------- data classes
@dataclass
class MixInfo:
    """What a mixer did: target = ``lam * y_a + (1 - lam) * y_b`` (``lam`` float or (N,))."""

    y_a: torch.Tensor
    y_b: torch.Tensor
    lam: Any
    index: torch.Tensor | None = None


@dataclass
class StepOutput:
    loss: torch.Tensor
    logits: torch.Tensor | None = None
    mix: MixInfo | None = None
    logs: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainState:
    epoch: int  # 0-based
    step: int  # global optimisation step, 0-based
    steps_per_epoch: int
    total_steps: int
    generator: torch.Generator
    ctx: "RunContext"

    @property
    def progress(self) -> float:
        """Fraction of training done, in [0, 1)."""
        return self.step / max(1, self.total_steps)


@dataclass
class RunContext:
    """Dataset-level context handed to methods (built once by the trainer)."""

    task: str  # "classification" or "regression"
    num_classes: int
    input_shape: tuple
    device: torch.device
    train: Any  # common.data.ArrayData of the training split
    fetch: Any  # callable(indices: LongTensor, generator) -> model-ready x on device
    label_smoothing: float = 0.0
    model_info: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- parameters
@dataclass
class NoParams:
    pass


def build_params(cls, values: dict | None, where: str):
    """Instantiate a ``Params`` dataclass from a dict, rejecting unknown keys clearly."""
    values = dict(values or {})
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            allowed = ", ".join(names) or "(none)"
            raise ConfigError(f"{where}: unknown key {key!r}.{did_you_mean(key, names)} Allowed keys: {allowed}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def check_range(where: str, key: str, value, lo=None, hi=None, lo_open=False, hi_open=False):
    """Raise ConfigError naming ``key`` unless ``value`` is a finite number with
    ``lo (<|<=) value (<|<=) hi``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {key}={value!r} is not a finite number")
    bad = (lo is not None and (value <= lo if lo_open else value < lo)) or (
        hi is not None and (value >= hi if hi_open else value > hi)
    )
    if bad:
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        raise ConfigError(
            f"{where}: {key}={value!r} is out of range; allowed {lb}{'-inf' if lo is None else lo}, "
            f"{'inf' if hi is None else hi}{rb}"
        )


def check_choice(where: str, key: str, value, choices) -> None:
    """Raise ConfigError naming ``key`` unless ``value`` is one of ``choices``."""
    if isinstance(value, bool) or value not in tuple(choices):
        raise ConfigError(f"{where}: {key}={value!r} is not allowed; choose one of {', '.join(map(repr, choices))}")


def check_bool(where: str, key: str, value) -> None:
    """Raise ConfigError naming ``key`` unless ``value`` is ``true`` or ``false``."""
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")


# --------------------------------------------------------------------------- base classes
class Method:
    """Base class. Subclasses set ``name``, optionally ``Params`` and override ``step``."""

    name: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    #: tasks the method supports
    tasks: ClassVar[tuple[str, ...]] = ("classification", "regression")
    #: True when the method mixes each sample with another of the same batch (needs batch_size >= 2)
    pairs_within_batch: ClassVar[bool] = False
    #: True when the method applies its own label smoothing (or none by design), so the run's
    #: ``train.label_smoothing`` must stay 0
    owns_label_smoothing: ClassVar[bool] = False

    @classmethod
    def check_run_config(cls, cfg: dict, info: dict, where: str) -> None:
        """Checks of the method's params against the rest of the resolved run config ``cfg``,
        run by ``validate_run_config`` before any job. ``info["params"]`` is the validated
        ``Params``; ``info["image_size"]`` (the dataset's) and ``info["patch_size"]`` (the
        model's) are present when known from the config. Raise :class:`ConfigError` naming the key."""

    def __init__(self, params, ctx: RunContext):
        self.p = params
        self.ctx = ctx
        if ctx.task not in self.tasks:
            raise ConfigError(f"method {self.name!r} does not support task {ctx.task!r} (supports {self.tasks})")
        if self.owns_label_smoothing and ctx.label_smoothing:
            raise ConfigError(f"method {self.name!r} sets its own label smoothing and does not combine with "
                              f"train.label_smoothing; leave it at 0 (got {ctx.label_smoothing})")

    def require_image_batch(self, x: torch.Tensor) -> None:
        """Raise ConfigError unless ``x`` is an image batch ``(N, C, H, W)``."""
        if x.dim() != 4:
            raise ConfigError(f"{self.name} needs image batches (N, C, H, W); got shape {tuple(x.shape)}")

    def setup(self, model: nn.Module) -> None:
        """Called once after the model is built and moved to the device."""

    # shared loss helpers -----------------------------------------------------------
    def plain_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.ctx.task == "regression":
            return torch.nn.functional.mse_loss(out.float().view_as(y), y.float())
        return cross_entropy(out, y, self.ctx.label_smoothing)

    def mixed_loss(self, out: torch.Tensor, y_a, y_b, lam) -> torch.Tensor:
        if self.ctx.task == "regression":
            return mixed_mse(out, y_a, y_b, lam)
        return mixed_cross_entropy(out, y_a, y_b, lam, self.ctx.label_smoothing)

    def step(self, model: nn.Module, batch: Batch, state: TrainState) -> StepOutput:
        raise NotImplementedError

    def epoch_end(self, state: TrainState) -> dict[str, float]:
        """Per-epoch aggregate logs (e.g. mean attention lambda); called after each epoch."""
        return {}


class ImagePairMethod(Method):
    """Base of classification methods that mix image pairs of the same batch (CutMix-style)."""

    tasks: ClassVar[tuple[str, ...]] = ("classification",)
    pairs_within_batch: ClassVar[bool] = True


class LossTerm:
    """An extra loss term that composes with any method reporting ``StepOutput.mix``."""

    name: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    tasks: ClassVar[tuple[str, ...]] = ("classification",)

    def __init__(self, params, ctx: RunContext):
        self.p = params
        self.ctx = ctx

    def setup(self, model: nn.Module) -> None:
        pass

    def __call__(self, model, batch: Batch, out: StepOutput, state: TrainState) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError


class Composite(Method):
    """``base + term1 + term2``: the base method's loss plus each term's."""

    def __init__(self, base: Method, terms: list[LossTerm]):
        self.base, self.terms = base, terms
        self.p, self.ctx = base.p, base.ctx
        self.name = "+".join([base.name] + [t.name for t in terms])  # type: ignore[misc]

    def setup(self, model):
        self.base.setup(model)
        for t in self.terms:
            t.setup(model)

    def step(self, model, batch, state):
        out = self.base.step(model, batch, state)
        for t in self.terms:
            if out.mix is None or out.logits is None:
                raise ConfigError(
                    f"loss term {t.name!r} needs a method that reports (y_a, y_b, lam) and logits; "
                    f"{self.base.name!r} does not"
                )
            extra, logs = t(model, batch, out, state)
            out.loss = out.loss + extra
            out.logs.update(logs)
        return out

    def epoch_end(self, state):
        return self.base.epoch_end(state)


def register_method(name: str):
    """Class decorator: ``@register_method("cutmix")`` (also for :class:`LossTerm` classes)."""

    def deco(cls):
        cls.name = name
        return METHODS.register(name)(cls)

    return deco


@dataclass
class MethodSpec:
    """A parsed ``method`` block: ``base`` (a Method class) with its param values, then the loss
    terms ``(name, class, values)`` that follow it in ``"base+term1+term2"``."""

    base_name: str
    base: type
    params: dict
    terms: list


def parse_method_spec(spec, where: str = "method") -> MethodSpec:
    """Split ``{"name": "cutmix+dm", <cutmix params>..., "dm": {<dm params>}}`` into its parts.
    An unknown name raises :class:`~common.registry.RegistryError` (with did-you-mean)."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a method name or a mapping with 'name', got {spec!r}")
    spec = dict(spec)
    if "name" not in spec:
        raise ConfigError(f"{where}: missing key 'name' (one of {', '.join(METHODS.names())})")
    parts = str(spec.pop("name")).split("+")
    base_cls = METHODS.get(parts[0])
    if not (isinstance(base_cls, type) and issubclass(base_cls, Method)):
        raise ConfigError(f"{where}: {parts[0]!r} is a loss term; it must follow a method, e.g. 'mixup+{parts[0]}'")
    terms = []
    for tname in parts[1:]:
        tcls = METHODS.get(tname)
        if not (isinstance(tcls, type) and issubclass(tcls, LossTerm)):
            raise ConfigError(f"{where}: {tname!r} is a method, not a loss term; only loss terms can follow '+'")
        terms.append((tname, tcls, spec.pop(tname, {}) or {}))
    return MethodSpec(parts[0], base_cls, spec, terms)


def build_method(spec: dict, ctx: RunContext, where: str = "method") -> Method:
    """Build ``spec = {"name": "cutmix+dm", <cutmix params>..., "dm": {<dm params>}}``."""
    ms = parse_method_spec(spec, where)
    base = ms.base(build_params(ms.base.Params, ms.params, f"{where} {ms.base_name!r}"), ctx)
    if not ms.terms:
        return base
    terms = []
    for tname, tcls, tvals in ms.terms:
        if ctx.task not in tcls.tasks:
            raise ConfigError(f"{where}: loss term {tname!r} does not support task {ctx.task!r}")
        terms.append(tcls(build_params(tcls.Params, tvals, f"{where} {tname!r}"), ctx))
    return Composite(base, terms)


# --------------------------------------------------------------------------- ERM
@register_method("erm")
class ERM(Method):
    """Empirical risk minimisation: plain loss on the clean batch, no mixing."""

    def step(self, model, batch, state):
        out = model(batch.x)
        y = batch.y
        return StepOutput(self.plain_loss(out, y), out, MixInfo(y, y, 1.0, None))
