"""The portable mode: every CPU kernel library held to one baseline instruction set, so that a run's
numbers no longer depend on which SIMD extensions the CPU offers.

A run option of the environment, never part of a run's identity: ``MIXREPRO_PORTABLE=1`` in the
environment of a training process. :func:`apply` (called before the first tensor operation) then
sets, for this process,

* ``ATEN_CPU_CAPABILITY=default``: ATen's scalar kernels instead of its AVX2/AVX-512 ones (these
  differ already in ``torch.randn``, hence in every model's initialisation);
* ``DNNL_MAX_CPU_ISA=SSE41`` and ``torch.backends.mkldnn`` off: no oneDNN kernels (their blocking
  also follows the CPU's cache sizes), convolutions go through ATen + BLAS;
* ``MKL_CBWR=COMPATIBLE``: MKL's conditional-numerical-reproducibility branch that runs the same
  code on every x86-64 CPU;
* NNPACK off and one thread (MKL, OpenMP, torch): no reduction order that depends on the thread
  count.

``python -m common.verify.portable <module> [args...]`` runs ``python -m <module> args`` in the
mode. :func:`provenance_entry` is what a run records about it. What the mode is measured to
guarantee, and what not, is in ``results/bench/portable.md`` (``python -m benchmarks.portable``).
"""
from __future__ import annotations

import os
import runpy
import sys

FLAG = "MIXREPRO_PORTABLE"
#: the environment of the mode (read by the libraries when torch first uses them)
ENV = {"ATEN_CPU_CAPABILITY": "default", "DNNL_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE",
       "MKL_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def enabled(environ=None) -> bool:
    """Whether the portable mode is asked for (``MIXREPRO_PORTABLE`` set to 1/true/yes/on)."""
    return (environ if environ is not None else os.environ).get(FLAG, "").strip().lower() in ("1", "true", "yes", "on")


def apply() -> bool:
    """Put this process in the portable mode when :func:`enabled`; return whether it is. Call it before
    the first tensor operation (ATen reads its capability, oneDNN and MKL their settings, on first
    use). Raises RuntimeError when torch has already fixed another capability."""
    if not enabled():
        return False
    os.environ.update(ENV)
    import torch

    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
    torch.set_num_threads(1)
    got = torch.backends.cpu.get_cpu_capability()
    if got != "DEFAULT":
        raise RuntimeError(f"{FLAG}=1 but torch already runs {got} kernels: the mode must be applied before the "
                           f"first tensor operation (or set ATEN_CPU_CAPABILITY=default before starting Python)")
    return True


def provenance_entry() -> dict:
    """What a run records about the mode: on or off, and the kernel settings it ran under."""
    import torch

    keys = ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "MKL_CBWR", "MKL_NUM_THREADS", "OMP_NUM_THREADS")
    return {"portable": enabled(), "env": {k: os.environ.get(k) for k in keys},
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkldnn_enabled": bool(torch.backends.mkldnn.enabled),
            "nnpack_enabled": bool(torch.backends.nnpack.is_available() and torch._C._get_nnpack_enabled()),
            "torch_num_threads": torch.get_num_threads()}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        print("usage: python -m common.verify.portable <module> [args...]  (runs the module in the portable mode)",
              file=sys.stderr)
        return 2
    os.environ[FLAG] = "1"
    apply()
    sys.argv = argv
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
