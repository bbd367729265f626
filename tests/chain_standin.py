"""Test-only stand-in for the trainer's stop contract (used by tests/test_launch.py, test_slurm.py).

    python tests/chain_standin.py OUT_DIR STEPS SECONDS_PER_STEP

"Trains" STEPS steps of SECONDS_PER_STEP each, folding each step into a state; on SIGUSR1 or SIGTERM
it writes a checkpoint at the next step boundary and exits with 75 without metrics.json; started
again it resumes from the checkpoint. Rank 0 (RANK, under torchrun) writes OUT_DIR/metrics.json
{state, steps}; every start appends a line to OUT_DIR/starts-<rank>.txt.
"""
import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

out, steps, dt = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
rank = int(os.environ.get("RANK", 0))
out.mkdir(parents=True, exist_ok=True)
stop = []
signal.signal(signal.SIGUSR1, lambda *_: stop.append("USR1"))
signal.signal(signal.SIGTERM, lambda *_: stop.append("TERM"))
ckpt = out / f"ckpt-{rank}.json"
state = json.loads(ckpt.read_text()) if ckpt.exists() else {"step": 0, "state": str(rank)}
with open(out / f"starts-{rank}.txt", "a") as f:
    f.write(f"{state['step']} {os.environ.get('SLURM_JOB_ID', '')}\n")
while state["step"] < steps:
    if stop:
        tmp = ckpt.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(ckpt)
        sys.exit(75)
    time.sleep(dt)
    state = {"step": state["step"] + 1, "state": hashlib.sha256(f"{state['state']}:{state['step']}".encode()).hexdigest()}
if rank == 0:
    (out / "metrics.json").write_text(json.dumps({"state": state["state"], "steps": state["step"]}))
