"""The user-facing errors of the core, in one module every other module may import.

Each names what is wrong and where (the key, file or path); ``python -m common.train`` turns them
into ``error: ...`` and an exit code (2 config, 3 non-finite loss, 4 data or output), and the
workflow stops the plan with the same message. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


class DataError(RuntimeError):
    """A dataset is missing, corrupt or malformed."""


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss (the run stops; no metrics.json is written)."""


class WriteError(OSError):
    """Writing an output file failed (disk full, file-size limit, a regular file where a directory
    should be, no permission): names what and where, e.g. ``cannot write checkpoint <path>: No
    space left on device``. The original error is chained as ``__cause__``."""

    def __init__(self, what: str, path, err: OSError | str):
        if isinstance(err, OSError):
            super().__init__(err.errno, err.strerror or str(err))
            reason = err.strerror or str(err)
        else:
            super().__init__(str(err))
            reason = str(err)
        self.what, self.path, self.reason = what, Path(path), reason

    def __str__(self) -> str:
        return f"cannot write {self.what} {self.path}: {self.reason}"
