"""Finding and reading a rule pack folder: pack.yaml plus rule files.

A rule file holds a list of items (or one item): a rule (has ``id``), a named value
(has ``derive``) or a decision table (has ``table`` and ``inputs``, as in
RULES-EXAMPLE.md).  Shapes are validated with pydantic here; the compiler does the
expressions.  Every error names the file, the line and the rule.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from claims_engine.errors import PackError
from claims_engine.pack.models import DecisionTable, DeriveModel, PackModel, RuleModel
from claims_engine.pack.source import PosDict, PosList, Where, load_yaml

BUNDLED_PACKS = "vn_bhyt"


@dataclass(frozen=True)
class Item:
    model: RuleModel | DeriveModel
    raw: PosDict
    file: Path

    @property
    def label(self) -> str:
        m = self.model
        return f"rule {m.id}" if isinstance(m, RuleModel) else f"value {m.derive}"

    def where(self, key: str | None = None) -> Where:
        if key is not None and key in self.raw.where:
            return self.raw.where[key]
        return self.raw.start


@dataclass(frozen=True)
class PackSource:
    folder: Path
    pack: PackModel
    pack_raw: PosDict
    items: tuple[Item, ...]
    hash: str


def bundled_root() -> Path:
    """Where bundled packs live: inside the installed wheel, or the repository's rules/."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_bundled" / "rules", here.parent / "rules"):
        if candidate.is_dir():
            return candidate
    raise PackError("the bundled rule packs are missing from this installation")


def find_pack(name_or_path: str | Path) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.is_file() and path.name == "pack.yaml":
        return path.parent
    if "/" not in str(name_or_path):
        bundled = bundled_root() / str(name_or_path)
        if bundled.is_dir():
            return bundled
    raise PackError(
        f"rule pack '{name_or_path}' not found: give a folder holding pack.yaml "
        f"or the name of a bundled pack ({BUNDLED_PACKS})"
    )


def _validation_message(exc: ValidationError, raw: PosDict, fallback: Where) -> tuple[Where, str]:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    where = raw.where.get(loc[0], fallback) if loc and isinstance(raw, PosDict) else fallback
    field = ".".join(loc) if loc else "(item)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        from claims_engine.lang.errors import did_you_mean

        allowed = []
        model_fields = getattr(exc, "title", "")
        for m in (RuleModel, DeriveModel, PackModel, DecisionTable):
            if m.__name__ == model_fields:
                allowed = list(m.model_fields)
        msg = f"unknown key '{loc[-1]}'.{did_you_mean(loc[-1], allowed)}"
        field = loc[-1]
    elif err["type"] == "missing":
        msg = "is required"
    elif err["type"] == "string_type" and not isinstance(err.get("input"), dict | list | None):
        value = err.get("input")  # YAML read a number, true/false or a date, not text
        msg += f" (YAML read {value!r} as a {type(value).__name__}: quote the expression)"
    elif err["type"] == "string_type":
        msg += (
            " (an expression holding commas inside YAML [...] or {...} must be quoted, "
            "or written in block style)"
        )
    return where, f"'{field}' {msg}" if err["type"] == "missing" else f"{field}: {msg}"


def _parse_item(raw: Any, file: Path, where: Where) -> Item:
    if not isinstance(raw, PosDict):
        raise PackError(f"{where}: expected a rule (a mapping with id, when, ...), found {raw!r}")
    if "table" in raw and "inputs" in raw:  # RULES-EXAMPLE.md's decision-table form
        body = PosDict({k: raw[k] for k in ("inputs", "rows") if k in raw})
        data = {
            "derive": raw["table"],
            "title": raw.get("title", raw["table"]),
            "basis": raw.get("basis", ""),
            "level": raw.get("level", "claim"),
            "table": body,
        }
        extra = set(raw) - {"table", "inputs", "rows", "title", "basis", "level"}
        if extra:
            raise PackError(
                f"{raw.where[sorted(extra)[0]]}: table {raw['table']}: unknown key "
                f"'{sorted(extra)[0]}'"
            )
        model_cls: type[RuleModel] | type[DeriveModel] = DeriveModel
    else:
        data = dict(raw)
        model_cls = DeriveModel if "derive" in raw else RuleModel
    label = raw.get("id") or raw.get("derive") or raw.get("table") or "(unnamed)"
    try:
        model = model_cls.model_validate(data)
    except ValidationError as exc:
        at, msg = _validation_message(exc, raw, raw.start)
        kind = "rule" if model_cls is RuleModel else "value"
        raise PackError(f"{at}: {kind} {label}: {msg}") from None
    return Item(model, raw, file)


def read_pack(name_or_path: str | Path) -> PackSource:
    folder = find_pack(name_or_path)
    pack_file = folder / "pack.yaml"
    if not pack_file.is_file():
        raise PackError(f"{folder}: not a rule pack (no pack.yaml)")
    raw = load_yaml(pack_file)
    if not isinstance(raw, PosDict):
        raise PackError(f"{pack_file}: expected a mapping with id, version, params, lookups")
    try:
        pack = PackModel.model_validate(dict(raw))
    except ValidationError as exc:
        at, msg = _validation_message(exc, raw, raw.start)
        raise PackError(f"{at}: pack.yaml: {msg}") from None

    if pack.files is not None:
        files = [folder / f for f in pack.files]
        for f in files:
            if not f.is_file():
                raise PackError(f"{pack_file}: listed rule file {f.name} does not exist")
    else:
        files = sorted(p for p in folder.glob("*.yaml") if p.name != "pack.yaml")
    items: list[Item] = []
    seen: dict[str, Where] = {}
    digest = hashlib.sha256()
    for f in [pack_file, *files]:
        digest.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    for f in files:
        doc = load_yaml(f)
        if doc is None:
            continue
        entries = doc if isinstance(doc, PosList) else PosList([doc])
        if not isinstance(doc, PosList):
            entries.where = [doc.start if isinstance(doc, PosDict) else Where(f, 1, 1)]
        for entry, where in zip(entries, entries.where, strict=True):
            item = _parse_item(entry, f, where)
            name = item.model.id if isinstance(item.model, RuleModel) else item.model.derive
            if name in seen:
                raise PackError(
                    f"{item.where()}: {item.label} is defined twice (first at {seen[name]})"
                )
            seen[name] = item.where()
            items.append(item)
    return PackSource(folder, pack, raw, tuple(items), digest.hexdigest()[:16])
