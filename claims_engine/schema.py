"""The batch contract (shared/spec/CONTRACT.md) as Arrow schemas and enumerations.

Everything else imports the contract from here; nothing here imports the rest of
the package.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

MONEY = pa.decimal128(18, 2)
# the same values as 8-byte integers: how outputs carry money until they are written
MONEY64 = pa.decimal64(18, 2)
QUANTITY = pa.decimal128(13, 3)
UNIT_PRICE = pa.decimal128(18, 3)
TIMESTAMP = pa.timestamp("s")
LOCAL_TIMEZONE = "Asia/Ho_Chi_Minh"


@dataclass(frozen=True)
class Column:
    """One contract column: name, Arrow type and whether null is allowed."""

    name: str
    type: pa.DataType
    nullable: bool
    origin: str  # the QĐ130 field it comes from, for messages and docs
    enum: tuple[object, ...] | None = None  # allowed values, when an enumeration
    non_negative: bool = False


def _c(
    name: str,
    type_: pa.DataType,
    nullable: bool,
    origin: str,
    enum: tuple[object, ...] | None = None,
    non_negative: bool = False,
) -> Column:
    return Column(name, type_, nullable, origin, enum, non_negative)


SEXES = (1, 2, 3)
VISIT_TYPES = tuple(range(1, 10))
ROUTES = ("registered", "referral", "emergency", "open_access", "self_referred")
LINE_KINDS = ("drug", "service", "supply")
INPATIENT_VISIT_TYPES = (3, 4)

CLAIM_COLUMNS: tuple[Column, ...] = (
    _c("claim_id", pa.string(), False, "MA_LK"),
    _c("facility_id", pa.string(), False, "MA_CSKCB"),
    _c("patient_id", pa.string(), True, "MA_BN"),
    _c("card_no", pa.string(), False, "MA_THE_BHYT"),
    _c("registered_facility", pa.string(), True, "MA_DKBD"),
    _c("card_valid_from", pa.date32(), False, "GT_THE_TU"),
    _c("card_valid_to", pa.date32(), False, "GT_THE_DEN"),
    _c("five_years_from", pa.date32(), True, "NAM_NAM_LIEN_TUC"),
    _c("copay_exempt_from", pa.date32(), True, "NGAY_MIEN_CCT"),
    _c("birth_date", pa.date32(), False, "NGAY_SINH"),
    _c("sex", pa.int8(), False, "GIOI_TINH", enum=SEXES),
    _c("visit_type", pa.int8(), False, "MA_LOAI_KCB", enum=VISIT_TYPES),
    _c("route", pa.string(), False, "MA_DOITUONG_KCB", enum=ROUTES),
    _c("admitted_at", TIMESTAMP, False, "NGAY_VAO"),
    _c("inpatient_at", TIMESTAMP, True, "NGAY_VAO_NOI_TRU"),
    _c("discharged_at", TIMESTAMP, False, "NGAY_RA"),
    _c("treatment_days", pa.int16(), True, "SO_NGAY_DTRI", non_negative=True),
    _c("total_drugs", MONEY, True, "T_THUOC", non_negative=True),
    _c("total_supplies", MONEY, True, "T_VTYT", non_negative=True),
    _c("primary_dx", pa.string(), False, "MA_BENH_CHINH"),
    _c("secondary_dx", pa.list_(pa.string()), True, "MA_BENH_KT"),
    _c("total_hospital", MONEY, False, "T_TONGCHI_BV", non_negative=True),
    _c("total_insured", MONEY, False, "T_TONGCHI_BH", non_negative=True),
    _c("patient_copay", MONEY, False, "T_BNCCT", non_negative=True),
    _c("patient_pays", MONEY, False, "T_BNTT", non_negative=True),
    _c("fund_pays", MONEY, False, "T_BHTT", non_negative=True),
)

LINE_COLUMNS: tuple[Column, ...] = (
    _c("claim_id", pa.string(), False, "MA_LK"),
    _c("line_no", pa.int32(), False, "STT"),
    _c("kind", pa.string(), False, "table", enum=LINE_KINDS),
    _c("group_code", pa.int16(), True, "MA_NHOM"),
    _c("item_code", pa.string(), False, "MA_THUOC / MA_DICH_VU / MA_VAT_TU"),
    _c("quantity", QUANTITY, False, "SO_LUONG", non_negative=True),
    _c("unit_price", UNIT_PRICE, False, "DON_GIA / DON_GIA_BH", non_negative=True),
    _c("hospital_unit_price", UNIT_PRICE, True, "DON_GIA_BV", non_negative=True),
    _c("service_rate", pa.int16(), False, "TYLE_TT_DV", non_negative=True),
    _c("coverage_rate", pa.int16(), False, "TYLE_TT_BH", non_negative=True),
    _c("benefit_rate", pa.int16(), False, "MUC_HUONG", non_negative=True),
    _c("amount_hospital", MONEY, False, "THANH_TIEN_BV", non_negative=True),
    _c("amount_insured", MONEY, False, "THANH_TIEN_BH", non_negative=True),
    _c("fund_pays", MONEY, False, "T_BHTT", non_negative=True),
    _c("patient_copay", MONEY, False, "T_BNCCT", non_negative=True),
    _c("ordered_at", TIMESTAMP, True, "NGAY_YL"),
    _c("performed_at", TIMESTAMP, True, "NGAY_TH_YL"),
    _c("department", pa.string(), True, "MA_KHOA"),
    _c("practitioner", pa.string(), True, "MA_BAC_SI"),
)


def arrow_schema(columns: tuple[Column, ...]) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in columns])


CLAIMS_SCHEMA = arrow_schema(CLAIM_COLUMNS)
LINES_SCHEMA = arrow_schema(LINE_COLUMNS)
CLAIM_COLUMN_BY_NAME = {c.name: c for c in CLAIM_COLUMNS}
LINE_COLUMN_BY_NAME = {c.name: c for c in LINE_COLUMNS}


# --- reference data (contract section 2) -------------------------------------


@dataclass(frozen=True)
class ReferenceTable:
    name: str
    columns: tuple[Column, ...]  # required columns (valid_from/valid_to optional unless listed)
    optional: bool = False  # the whole table may be absent


VALIDITY_COLUMNS: tuple[Column, ...] = (
    _c("valid_from", pa.date32(), True, "validity"),
    _c("valid_to", pa.date32(), True, "validity"),
)

_CATALOGUE = (
    _c("facility_id", pa.string(), True, "catalogue"),
    _c("item_code", pa.string(), False, "catalogue"),
    _c("max_unit_price", UNIT_PRICE, True, "catalogue", non_negative=True),
    _c("coverage_rate", pa.int16(), False, "catalogue", non_negative=True),
)

REFERENCE_TABLES: tuple[ReferenceTable, ...] = (
    ReferenceTable(
        "facilities",
        (
            _c("facility_id", pa.string(), False, "facilities"),
            _c(
                "level",
                pa.string(),
                False,
                "facilities",
                enum=("central", "provincial", "district", "commune"),
            ),
            _c("province_code", pa.string(), False, "facilities"),
        ),
    ),
    ReferenceTable("drugs", _CATALOGUE),
    ReferenceTable("services", _CATALOGUE),
    ReferenceTable("supplies", _CATALOGUE),
    ReferenceTable(
        "icd10",
        (
            _c("code", pa.string(), False, "icd10"),
            _c("sex", pa.int8(), True, "icd10", enum=(1, 2)),
            _c("min_age_days", pa.int32(), True, "icd10", non_negative=True),
            _c("max_age_days", pa.int32(), True, "icd10", non_negative=True),
        ),
    ),
    ReferenceTable(
        "card_groups",
        (
            _c("group_code", pa.string(), False, "card_groups"),
            _c("benefit_level", pa.int8(), False, "card_groups", enum=(1, 2, 3, 4, 5)),
        ),
    ),
    ReferenceTable(
        "provinces",
        (
            _c("province_code", pa.string(), False, "provinces"),
            _c("name", pa.string(), False, "provinces"),
            _c("merged_into", pa.string(), True, "provinces"),
        ),
    ),
    ReferenceTable(
        "base_salary",
        (
            _c("valid_from", pa.date32(), False, "base_salary"),
            _c("amount", MONEY, False, "base_salary", non_negative=True),
        ),
    ),
    ReferenceTable(
        "blocked_cards",
        (
            _c("card_no", pa.string(), False, "blocked_cards"),
            _c("valid_from", pa.date32(), False, "blocked_cards"),
            _c("reason", pa.string(), True, "blocked_cards"),
        ),
    ),
    ReferenceTable(
        "frequency_limits",
        (
            _c("item_code", pa.string(), False, "frequency_limits"),
            _c("max_count", pa.int32(), False, "frequency_limits", non_negative=True),
            _c("window_days", pa.int32(), False, "frequency_limits", non_negative=True),
        ),
        optional=True,
    ),
)
REFERENCE_TABLE_BY_NAME = {t.name: t for t in REFERENCE_TABLES}


# --- outputs (contract section 4) and reason codes (section 5) ----------------

DECISIONS = ("approved", "rejected", "flagged")
LINE_DECISIONS = ("paid", "adjusted", "rejected")
SEVERITIES = ("reject", "adjust", "flag")
LEVELS = ("claim", "line")

MALFORMED = "MALFORMED"
ORPHAN_LINE = "ORPHAN_LINE"

REASONS_SCHEMA = pa.schema(
    [
        pa.field("claim_id", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("line_no", pa.int32()),
        pa.field("rule_id", pa.string()),
        pa.field("code", pa.string()),
        pa.field("severity", pa.string()),
        pa.field("message", pa.string()),
    ]
)

# The card holder is the person: the last 10 characters of card_no (the
# social-insurance number), unchanged when the group letters change.
CARD_HOLDER_CHARS = 10
