"""Write the content digest of FILE... (common.fileio.files_digest) to OUT.

    python workflow/scripts/inputs_digest.py OUT FILE...
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `common`

from common.fileio import atomic_write_text, files_digest  # noqa: E402

if len(sys.argv) < 2:
    sys.exit(__doc__)
atomic_write_text(sys.argv[1], files_digest(sys.argv[2:]) + "\n")
