"""Dictionary codes kept from the file: the same words and rows as encoding the strings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from claims_engine.io.dictionary import from_dictionary_column, without


def _decoded(codes_indices: np.ndarray, words: pa.Array) -> list[str | None]:
    table = words.to_pylist()
    return [None if i < 0 else table[i] for i in codes_indices]


def test_chunks_with_their_own_dictionaries_share_one_word_list() -> None:
    a = pa.array(["x", "y", None, "x"]).dictionary_encode()
    b = pa.array(["z", "x", "z"]).dictionary_encode()
    column = pa.chunked_array([a, b, a])
    codes = from_dictionary_column(column)
    assert codes is not None
    assert sorted(codes.words.to_pylist()) == ["x", "y", "z"]  # each word once
    assert _decoded(codes.indices, codes.words) == column.cast(pa.string()).to_pylist()
    assert codes.indices.dtype == np.int32


def test_plain_strings_have_no_codes() -> None:
    assert from_dictionary_column(pa.chunked_array([pa.array(["a"])])) is None
    assert from_dictionary_column(pa.chunked_array([pa.array([1]).dictionary_encode()])) is None


def test_empty_and_all_null_columns() -> None:
    empty = pa.chunked_array([], type=pa.dictionary(pa.int32(), pa.string()))
    codes = from_dictionary_column(empty)
    assert codes is not None and len(codes.indices) == 0
    nulls = pa.chunked_array([pa.array([None, None], pa.string()).dictionary_encode()])
    codes = from_dictionary_column(nulls)
    assert codes is not None and codes.indices.tolist() == [-1, -1]


def test_without_nulls_out_rows() -> None:
    codes = from_dictionary_column(pa.chunked_array([pa.array(["a", "b"]).dictionary_encode()]))
    assert codes is not None
    masked = without(codes, pa.chunked_array([pa.array([True, False])]))
    assert _decoded(masked.indices, masked.words) == ["a", None]


def test_parquet_row_groups_read_as_dictionaries(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    values = [None if v == 0 else f"item-{v}" for v in rng.integers(0, 50, 5000)]
    pq.write_table(pa.table({"c": values}), tmp_path / "t.parquet", row_group_size=700)
    raw = pq.read_table(tmp_path / "t.parquet", read_dictionary=["c"])
    assert raw.column("c").num_chunks > 1
    codes = from_dictionary_column(raw.column("c"))
    assert codes is not None
    assert _decoded(codes.indices, codes.words) == values
    assert len(codes.words) == len({v for v in values if v is not None})


def test_join_only_codes_keep_each_row_group_dictionary() -> None:
    a = pa.array(["x", "y"]).dictionary_encode()
    b = pa.array(["y", "z", None]).dictionary_encode()
    codes = from_dictionary_column(pa.chunked_array([a, b, a]), unique=False)
    assert codes is not None and not codes.unique
    assert codes.words.to_pylist() == ["x", "y", "y", "z"]  # "y" twice: not deduplicated
    assert _decoded(codes.indices, codes.words) == ["x", "y", "y", "z", None, "x", "y"]
