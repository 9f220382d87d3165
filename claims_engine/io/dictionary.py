"""Dictionary codes of string columns, kept from the file instead of recomputed.

Parquet stores code columns (claim_id, item_code, kind...) dictionary-encoded, one
dictionary per row group.  Reading them as Arrow dictionaries is cheaper than
materializing millions of strings, and the codes are exactly what the engine's
lookups, windows and joins need: hashing 8 million item codes again would cost
more than reading them.  The batch tables still hold plain strings (the contract's
type); these codes travel beside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Codes:
    """A string column as one dictionary for the whole batch."""

    indices: Array  # int32 per row: position in ``words``, -1 for null
    words: pa.Array  # strings (pa.string()), in first-seen order
    # words are distinct (equal values have equal codes); a join key needs no such
    # guarantee, and skipping it saves hashing a million claim ids once more
    unique: bool = True


def _dictionary_id(chunk: pa.DictionaryArray) -> tuple[int, int]:
    # Chunks of one Parquet row group share one dictionary object: unify each once.
    buffers = chunk.dictionary.buffers()
    return (buffers[-1].address if buffers[-1] is not None else 0, len(chunk.dictionary))


def from_dictionary_column(column: Any, unique: bool = True) -> Codes | None:
    """Codes of a ``dictionary<int*, string>`` column (None: not such a column).

    The distinct dictionaries of the chunks are encoded together once, so the
    rows themselves are never hashed; each chunk's indices are then remapped.
    With ``unique=False`` the dictionaries are only concatenated (a word may
    repeat across row groups).
    """
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    type_ = column.type
    if not pa.types.is_dictionary(type_) or not pa.types.is_string(type_.value_type):
        return None
    distinct: dict[tuple[int, int], int] = {}
    dictionaries: list[pa.Array] = []
    for chunk in chunks:
        key = _dictionary_id(chunk)
        if key not in distinct:
            distinct[key] = len(dictionaries)
            dictionaries.append(chunk.dictionary)
    words = pa.array([], pa.string())
    remap: list[Array] = []
    offset_only = False  # codes are the dictionary index plus the dictionary's start
    if dictionaries:
        together = pa.concat_arrays([d.cast(pa.string()) for d in dictionaries])
        if unique:
            encoded = pc.dictionary_encode(together)
            words = encoded.dictionary
            all_codes = np.asarray(encoded.indices.fill_null(-1).to_numpy(), dtype=np.int32)
        else:
            words = together
            offset_only = together.null_count == 0
            all_codes = np.arange(len(together), dtype=np.int32)
            if together.null_count:
                valid = together.is_valid().to_numpy(zero_copy_only=False)
                all_codes = np.where(valid, all_codes, -1).astype(np.int32)
        ends = np.cumsum([len(d) for d in dictionaries])
        remap = np.split(all_codes, ends[:-1])
    starts = np.concatenate(([0], np.cumsum([len(d) for d in dictionaries])))
    indices = np.empty(sum(len(c) for c in chunks), dtype=np.int32)
    at = 0
    for chunk in chunks:
        which = distinct[_dictionary_id(chunk)]
        raw = chunk.indices
        idx = np.asarray((raw.fill_null(0) if raw.null_count else raw).to_numpy())
        out = indices[at : at + len(idx)]
        if not len(remap[which]):
            out[:] = -1
        elif offset_only:  # the words are the dictionaries one after another
            np.add(idx, starts[which], out=out, casting="unsafe")
        else:
            np.take(remap[which], idx, out=out)
        if raw.null_count:
            out[~raw.is_valid().to_numpy(zero_copy_only=False)] = -1
        at += len(idx)
    return Codes(indices, words, unique)


def without(codes: Codes, valid: Any) -> Codes:
    """``codes`` with -1 (null) where ``valid`` (a boolean Arrow column) is false."""
    keep = np.asarray(pc.fill_null(valid, False).to_numpy(zero_copy_only=False), dtype=bool)
    if bool(keep.all()):
        return codes
    return Codes(np.where(keep, codes.indices, -1).astype(np.int32), codes.words, codes.unique)


__all__ = ["Codes", "from_dictionary_column", "without"]
