"""Which results of a scale are current, decided from file contents alone: never from file times, and
without writing anything (a dry run changes nothing on disk).

* A run is **stale** when its metrics.json was computed by other code than today's
  (:func:`common.codehash.stale_runs`). The default target then asks for the train job's
  ``retrained`` stamp, a temporary output that does not exist, so Snakemake retrains the run and
  rebuilds everything computed from it.
* An aggregate is **adopted** when the content digest of the files it is computed from, recorded right
  after it was built, equals the digest of those files now and none of its runs is stale. The rules
  then mark its inputs ``ancient()``: in a fresh clone git's checkout order makes committed
  aggregates look older than their inputs, and file times must not rebuild them. The records are
  ``results/<scale>/digests/<paper>.sha256`` (a paper's table and figures),
  ``digests/cross-paper.sha256`` (summary, matrix, cross-paper tables) and ``readmes.done`` (the
  README splice, built from the same files as the cross-paper aggregates). A run's metrics.json
  stands for every file its job writes (epochs.jsonl, its benchmark file).

The digest rules write the records:

    python -m common.freshness record OUT FILE...
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .codehash import stale_runs
from .fileio import atomic_write_text, files_digest
from .workplan import Plan, cross_record, paper_record, readmes_record, retrained_stamp


def recorded(path: Path) -> str | None:
    """The digest a record holds, or None when there is no readable record."""
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class Freshness:
    stale: frozenset[str]  # runs of the plan computed by other code
    adopted: frozenset[str]  # papers whose table and figures are current
    cross: bool  # the cross-paper aggregates are current (never for a paper subset)
    readmes: bool  # the README blocks were spliced from them


def assess(plan: Plan) -> Freshness:
    """What of ``plan`` is current. A stale run whose ``retrained`` stamp is left over from an interrupted
    workflow (see :func:`remove_stamps`) could not be retrained: that is an error naming the stamps."""
    root, scale = plan.root, plan.scale
    stale = frozenset(stale_runs(scale, root, plan.runs))
    left = [f for f in (retrained_stamp(scale, r) for r in sorted(stale)) if (root / f).exists()]
    if left:
        raise ValueError(f"stale runs cannot be retrained while stamps of an interrupted workflow are left: "
                         f"rm {' '.join(left)}")
    adopted = frozenset(p for p in plan.papers if stale.isdisjoint(plan.by_paper[p])
                        and recorded(root / paper_record(scale, p)) == files_digest(plan.paper_inputs(p), root))
    cross = readmes = False
    if not plan.subset:
        current = files_digest(plan.cross_inputs(), root)
        cross = adopted == set(plan.papers) and not stale and recorded(root / cross_record(scale)) == current
        readmes = cross and recorded(root / readmes_record(scale)) == current
    return Freshness(stale, adopted, cross, readmes)


def remove_stamps(root, scale: str) -> None:
    """Remove every ``retrained`` stamp under ``results/<scale>/`` (verify trees included) once the workflow
    has ended (its onsuccess/onerror handlers): Snakemake keeps a temporary file that the target rule asked
    for, and a train job whose stamp nothing asked for (a run trained for the first time) leaves one too."""
    for stamp in (Path(root) / "results" / scale).glob("**/tmp/retrained/*"):
        stamp.unlink(missing_ok=True)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] != "record":
        print(__doc__.rsplit("\n\n", 1)[-1], file=sys.stderr)
        return 2
    atomic_write_text(argv[1], files_digest(argv[2:]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
