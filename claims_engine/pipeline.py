"""The main job, front-end neutral: read -> compile -> evaluate -> adjudicate -> write.

The CLI (and later the HTTP service and the distributed runner) call these
functions; they never print.  ``progress`` receives stage names as work starts.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from claims_engine import adjudicate, engine, schema
from claims_engine.errors import ClaimsEngineError
from claims_engine.history import HistoryStore
from claims_engine.io.batch import Batch, batch_files, read_batch
from claims_engine.io.output import OutputStage, content_hash, output_lock
from claims_engine.io.reference import load_reference
from claims_engine.kernels import preload
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


def evaluate(
    batch: Batch, inputs: Inputs, batch_id: str, progress: Progress = _quiet
) -> adjudicate.Result:
    t0 = time.perf_counter()
    outcome = engine.run(inputs.plan, batch, inputs.reference, progress)
    t1 = time.perf_counter()
    progress("decide")
    result = adjudicate.build(outcome, inputs.plan, batch_id)
    result.summary["timings"]["evaluate"] = round(t1 - t0, 4)
    result.summary["timings"]["adjudicate"] = round(time.perf_counter() - t1, 4)
    return result


def _emptied(batch: Batch) -> Batch:
    """``batch`` without its rows, so that its columns can be freed."""
    return replace(
        batch,
        claims=batch.claims.schema.empty_table(),
        lines=batch.lines.schema.empty_table(),
        claim_errors=pa.nulls(0, pa.string()),
        line_errors=pa.nulls(0, pa.string()),
        codes={},
    )


def history_since(batch: Batch, plan: Plan) -> date | None:
    """How far back the card-holder rules look into history: the pack's history_days
    before the batch's earliest admission (None: the whole history)."""
    days = dict(plan.params).get("history_days")
    admitted = batch.claims.column("admitted_at")
    if days is None or admitted.null_count == len(admitted):
        return None
    first: datetime = pc.min(admitted).as_py()
    return (first - timedelta(days=int(days))).date()


def card_holders(batch: Batch) -> pa.Array:
    """The batch's distinct card holders (last 10 characters of card_no)."""
    cards = batch.claims.column("card_no").drop_null()
    return pc.unique(pc.utf8_slice_codeunits(cards, start=-schema.CARD_HOLDER_CHARS))


def history_rows(
    batch: Batch, result: adjudicate.Result, outcome: engine.Outcome
) -> tuple[pa.Table, pa.Table]:
    """What a run adds to history: claims that are not MALFORMED, their lines, decisions."""
    keep = ~outcome.intake.malformed
    claims = batch.claims.append_column("decision", result.claim_decisions).filter(pa.array(keep))
    row = outcome.intake.line_claim_row
    line_keep = (row >= 0) & keep[np.maximum(row, 0)]
    lines = batch.lines.append_column("decision", result.line_decisions).filter(pa.array(line_keep))
    return claims, lines


def _batch_id_meanwhile(batch_id: str | None, batch_path: Path) -> Future[str]:
    """The batch id: the one given, or else the content hash of the batch's files,
    computed on a thread (hashlib releases the GIL) while the batch is read and
    evaluated (~400 MB of input at a million claims)."""
    if batch_id is not None:
        given: Future[str] = Future()
        given.set_result(batch_id)
        return given
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-hash")
    try:
        return pool.submit(content_hash, batch_files(batch_path))
    finally:
        pool.shutdown(wait=False)  # the thread ends with its one task


def adjudicate_batch(
    batch_path: Path,
    out_dir: Path,
    reference_dir: Path,
    pack: str | Path = "vn_bhyt",
    batch_id: str | None = None,
    progress: Progress = _quiet,
    history_dir: Path | None = None,
    codes: frozenset[str] | None = None,
) -> adjudicate.Result:
    """The nightly job: every claim of a batch to approved/rejected/flagged files.

    With ``history_dir``, card-holder rules also see earlier batches, and after the
    outputs are written this batch's rows are committed to history in one
    transaction (a re-run of the same batch id replaces them).  With ``codes``
    only the rules of those reason codes run (summary.json lists them).
    """
    with output_lock(out_dir):  # fail fast if another run writes the same folder
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        progress("compile")
        plan = compile_pack(pack)
        if codes is not None:
            try:
                plan = plan.select(codes)
            except ValueError as exc:
                raise ClaimsEngineError(f"--codes: {exc}") from exc
        timings["compile"] = time.perf_counter() - t0
        progress("reference")
        inputs = Inputs(plan, load_reference(reference_dir).tables)
        t1 = time.perf_counter()
        timings["reference"] = t1 - t0 - timings["compile"]
        progress("read")
        # the kernels' machine code loads while Arrow decodes the batch's pages
        preload.preload_in_background()
        bid = _batch_id_meanwhile(batch_id, batch_path)
        # history keeps whole rows, so a run that writes it reads every column
        needed = None if history_dir is not None else engine.needed_fields(inputs.plan)
        batch = read_batch(batch_path, needed)
        # decoding pages and casting leave freed Arrow buffers behind: give them back
        # to the system before the rules allocate their (numpy) arrays
        pa.default_memory_pool().release_unused()
        t2 = time.perf_counter()
        timings["read"] = t2 - t1
        store = past = None
        if history_dir is not None:
            progress("history")
            store = HistoryStore(history_dir)
            # only the columns the rules read (history rows are never output)
            used = engine.needed_fields(inputs.plan)
            keys = {"claim_id", "facility_id"}
            past = store.read(
                card_holders(batch),
                history_since(batch, inputs.plan),
                exclude_batch=bid.result(),
                exclude_claims=batch.claims.select(["claim_id", "facility_id"]),
                claim_columns=sorted(used["claim"] | keys),
                line_columns=sorted(used["line"] | keys),
            )
            timings["history.read"] = time.perf_counter() - t2
        progress("evaluate")
        t3 = time.perf_counter()
        outcome = engine.run(
            inputs.plan,
            batch,
            inputs.reference,
            progress,
            engine.History(past.claims, past.lines) if past else None,
        )
        t4 = time.perf_counter()
        if store is None:  # history keeps whole rows; otherwise only output columns stay
            outcome, batch = adjudicate.slim(outcome), _emptied(batch)
            # the evaluators (a claim/line pair refers to each other) go with the
            # cycle collector; then the freed columns go back to the system
            gc.collect()
            pa.default_memory_pool().release_unused()
        with OutputStage(out_dir) as stage:
            progress("decide")
            # each output table is written (on a thread) as soon as it is built
            result = adjudicate.build(outcome, inputs.plan, bid.result(), emit=stage.add)
            timings["evaluate"] = t4 - t3
            timings["adjudicate"] = time.perf_counter() - t4
            progress("write")
            t5 = time.perf_counter()
            result.summary["timings"].update({k: round(v, 4) for k, v in timings.items()})
            if codes is not None:
                result.summary["pack"]["selected_codes"] = sorted(codes)
            stage.publish(result.summary)
        # the writing left after building (most of it overlaps "adjudicate")
        result.summary["timings"]["write"] = round(time.perf_counter() - t5, 4)
        if store is not None and past is not None:
            progress("history")
            claims, lines = history_rows(batch, result, outcome)
            store.commit(bid.result(), claims, lines, expected_version=past.version)
        return result
