"""Check committed runs on this machine (``snakemake verify``) and the portable kernel mode.

Modules: :mod:`.machine` (machine id, what the committed runs' provenance records about versions),
:mod:`.portable` (the portable mode: one fixed instruction set for every kernel library, an env-level
run option), :mod:`.costs` (what a rerun costs here: committed times, one-machine factors, the
calibration run), :mod:`.select` (the sample within a budget), :mod:`.compare` (rerun vs committed:
bit-identical, within seed noise, outside it; claims recomputed with the reruns), :mod:`.report`
(report.md / report.json), :mod:`.cli` (``python -m common.verify <calibrate|plan|report>``).

Nothing here imports torch at import time: :mod:`.portable` must be able to set the kernel
libraries' environment before torch loads.
"""
