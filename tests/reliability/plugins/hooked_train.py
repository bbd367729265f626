"""``python -m common.train`` with the test-only trainer hooks (``trainer_hooks.py``) installed; a
script, so torchrun can start it too."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import trainer_hooks  # noqa: E402,F401  (installs the hooks)

from common.train import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
