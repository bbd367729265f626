"""ResizeMix (Qin et al., arXiv 2012.11101): the add-a-method demonstration — one method file,
one grid, no edit to common/ or the Snakefile."""
from . import method  # noqa: F401  (registers "resizemix")
