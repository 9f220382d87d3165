"""The lines' claim_id words to claim rows (kernels/join.py): the walk in file order
gives exactly what a hash lookup of each word gives, whatever the order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from claims_engine.kernels import join


def _first_rows(ids: pa.Array) -> np.ndarray:
    return np.asarray(pc.index_in(ids, value_set=ids).fill_null(-1).to_numpy(), dtype=np.int64)


def _check(words: list[str | None], ids: list[str | None]) -> np.ndarray:
    claim_ids = pa.array(ids, pa.string())
    word_array = pa.array(words, pa.string())
    got = join.rows_of_words(word_array, join.ClaimIds(claim_ids), _first_rows(claim_ids))
    want = pc.index_in(word_array, value_set=claim_ids).fill_null(-1).to_numpy()
    assert got.tolist() == want.tolist()
    return got


def test_words_in_claim_order_are_found_by_the_walk() -> None:
    ids = [f"C{i:05d}" for i in range(200)]
    got = _check(ids, ids)
    assert got.tolist() == list(range(200))


def test_gaps_orphans_repeats_and_a_shuffle() -> None:
    ids = [f"C{i:03d}" for i in range(60)] + ["C007", None, ""]  # a repeated id, a null
    words = [f"C{i:03d}" for i in range(60) if i % 7 != 3]  # claims without lines
    words[10:10] = ["ORPHAN", "C999"]  # lines without claim
    words[30:30] = [words[29]]  # a claim split over two row groups
    _check(words, ids)
    _check(list(reversed(words)), ids)  # out of order: found by the lookup
    _check(["", "C007", None], ids)  # the empty id is an id; a null word finds nothing


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.text("AB1", max_size=3)), max_size=30),
    st.lists(st.text("AB1", max_size=3), max_size=30),
)
def test_any_words_against_any_ids(ids: list[str | None], extra: list[str]) -> None:
    present = [i for i in ids if i is not None]
    _check(present + extra, ids)
    _check(extra + present[::-1], ids)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.text("AB1é", max_size=4), max_size=30),
    st.lists(st.text("AB1é", max_size=4), max_size=10),
    st.randoms(use_true_random=False),
)
def test_ascending_ids_are_searched(ids: list[str], extra: list[str], rnd: object) -> None:
    """Claim ids in ascending byte order (repeats included): the words the walk does
    not meet are binary-searched, still the first row of each id."""
    ids = sorted(ids, key=lambda s: s.encode())
    words = ids + extra
    rnd.shuffle(words)  # type: ignore[attr-defined]
    _check(words, ids)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text("AB1", max_size=3)), max_size=30), st.booleans())
def test_first_rows_of_claim_ids(ids: list[str | None], ascending: bool) -> None:
    """Each claim row's first row with its id: by one pass over ascending ids, by
    hashing otherwise; the same answer either way."""
    if ascending:
        ids = sorted((i for i in ids if i is not None), key=lambda s: s.encode())
    claim_ids = pa.array(ids, pa.string())
    assert join.first_rows(join.ClaimIds(claim_ids)).tolist() == _first_rows(claim_ids).tolist()
