"""The main job, front-end neutral: read -> compile -> evaluate -> adjudicate -> write.

The CLI (and later the HTTP service and the distributed runner) call these
functions; they never print.  ``progress`` receives stage names as work starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from claims_engine import adjudicate, engine
from claims_engine.io.batch import Batch, read_batch
from claims_engine.io.output import content_hash, output_lock, write_outputs
from claims_engine.io.reference import load_reference
from claims_engine.plan.compiler import compile_pack
from claims_engine.plan.plan import Plan

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class Inputs:
    plan: Plan
    reference: dict[str, pa.Table]


def prepare(reference_dir: Path, pack: str | Path = "vn_bhyt") -> Inputs:
    """Compile the pack and load reference data once; reusable for many batches."""
    return Inputs(compile_pack(pack), load_reference(reference_dir).tables)


def evaluate(batch: Batch, inputs: Inputs, batch_id: str,
             progress: Progress = _quiet) -> adjudicate.Result:
    t0 = time.perf_counter()
    outcome = engine.run(inputs.plan, batch, inputs.reference, progress)
    t1 = time.perf_counter()
    progress("decide")
    result = adjudicate.build(outcome, inputs.plan, batch_id)
    result.summary["timings"]["evaluate"] = round(t1 - t0, 4)
    result.summary["timings"]["adjudicate"] = round(time.perf_counter() - t1, 4)
    return result


def adjudicate_batch(batch_path: Path, out_dir: Path, reference_dir: Path,
                     pack: str | Path = "vn_bhyt", batch_id: str | None = None,
                     progress: Progress = _quiet) -> adjudicate.Result:
    """The nightly job: every claim of a batch to approved/rejected/flagged files."""
    with output_lock(out_dir):  # fail fast if another run writes the same folder
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        progress("compile")
        inputs = prepare(reference_dir, pack)
        t1 = time.perf_counter()
        timings["compile+reference"] = t1 - t0
        progress("read")
        batch = read_batch(batch_path, engine.needed_fields(inputs.plan))
        bid = batch_id or content_hash(batch.files)
        t2 = time.perf_counter()
        timings["read"] = t2 - t1
        progress("evaluate")
        result = evaluate(batch, inputs, bid, progress)
        t3 = time.perf_counter()
        progress("write")
        result.summary["timings"].update({k: round(v, 4) for k, v in timings.items()})
        write_outputs(out_dir, result.tables(), result.summary)
        result.summary["timings"]["write"] = round(time.perf_counter() - t3, 4)
        return result
