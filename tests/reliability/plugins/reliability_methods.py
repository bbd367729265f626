"""Test-only methods, imported only inside trainer subprocesses (never registered in the
pytest process, so they cannot leak into other tests' registries)."""
from __future__ import annotations

from dataclasses import dataclass

from common.methods import Method, MixInfo, StepOutput, check_range, register_method


@dataclass
class NanParams:
    at_step: int = 0  # global step (0-based) whose loss is made NaN
    value: str = "nan"  # "nan" or "inf"

    def __post_init__(self):
        check_range("method", "at_step", self.at_step, 0)


@register_method("nan_at_step_test")
class NanAtStep(Method):
    """ERM whose loss turns non-finite at one global step."""

    Params = NanParams

    def step(self, model, batch, state):
        out = model(batch.x)
        loss = self.plain_loss(out, batch.y)
        if state.step == self.p.at_step:
            loss = loss * float(self.p.value)
        return StepOutput(loss, out, MixInfo(batch.y, batch.y, 1.0))
