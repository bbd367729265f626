"""The machine a verification runs on: its id, its description, and the library versions that differ
from those the committed runs recorded.

**Machine id** (:func:`machine_id`): ``<cpu model>-<torch capability>-<hash6>``, e.g.
``amd-epyc-avx2-3f09c1``, where the hash covers the CPU model string, the instruction-set flags that
change which float kernels run (:func:`common.fileio.hardware`) and torch's CPU capability. It names
what decides whether floats round the same way, so two machines of one type share an id and a rerun
there is expected to be bit-identical. It leaves out the hostname (which says nothing about
rounding and would publish a machine name), the thread count and the library versions (reported
beside it; a version change is listed as such, see :func:`version_differences`). The portable mode
changes the capability torch runs, hence the id.
"""
from __future__ import annotations

import hashlib
import json
import re

#: provenance.versions entries that describe the machine's OS, not a library
NOT_LIBRARIES = ("platform",)


def machine_id(hw: dict) -> str:
    """Short, stable id of a machine type from ``common.fileio.hardware()`` output."""
    model = re.sub(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|@.*$", " ", hw["cpu_model"].lower())
    words = re.findall(r"[a-z0-9]+", model)
    name = "-".join(words)[:24].strip("-") or "cpu"
    cap = re.sub(r"[^a-z0-9]+", "", str(hw["torch_cpu_capability"]).lower()) or "unknown"
    key = json.dumps([hw["cpu_model"], sorted(hw["cpu_flags"]), hw["torch_cpu_capability"]])
    return f"{name}-{cap}-{hashlib.sha256(key.encode()).hexdigest()[:6]}"


def effective_hardware() -> dict:
    """``common.fileio.hardware()`` with the capability training runs under here: DEFAULT when the
    portable mode is asked for (``MIXREPRO_PORTABLE``), which the process asking need not be in."""
    from ..fileio import hardware
    from . import portable

    hw = hardware()
    return {**hw, "torch_cpu_capability": "DEFAULT"} if portable.enabled() else hw


def describe() -> dict:
    """This machine: hardware (CPU model, ISA flags, torch capability), id, threads, library versions,
    portable mode (applied to this process first when asked for, so that it reports what runs train under)."""
    from ..fileio import package_versions, thread_settings
    from . import portable

    portable.apply()
    hw = effective_hardware()
    return {"id": machine_id(hw), **hw, "threads": thread_settings(), "versions": package_versions(),
            "portable": portable.provenance_entry()}


def committed_versions(provenances: list[dict]) -> dict[str, list[str]]:
    """``{package: sorted distinct versions}`` over the committed runs' ``provenance.versions``."""
    out: dict[str, set] = {}
    for p in provenances:
        for pkg, v in (p.get("versions") or {}).items():
            if pkg not in NOT_LIBRARIES:
                out.setdefault(pkg, set()).add(str(v))
    return {k: sorted(v) for k, v in sorted(out.items())}


def version_differences(committed: dict[str, list[str]], here: dict[str, str]) -> list[dict]:
    """Packages whose version here is not one the committed runs recorded (or that is missing here)."""
    return [{"package": pkg, "committed": vs, "here": here.get(pkg)}
            for pkg, vs in committed.items() if here.get(pkg) not in vs]
