"""Loading packs: every mistake an author can make is a PackError that says where.

Each bad pack is written into tmp_path; the message must carry ``file:line:col``,
the rule (or table, lookup) it is about, and a hint that helps fix it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from claims_engine.errors import PackError
from claims_engine.pack.loader import bundled_root, find_pack, read_pack
from claims_engine.pack.models import RuleModel
from claims_engine.plan.compiler import compile_pack

PACK = """\
id: test_pack
version: '1'
params:
  grace_days: 15
lookups:
  facility:
    table: facilities
    keys: {facility_id: facility_id}
    as_of: admission_date
  catalogue:
    level: line
    table: drugs
    keys: {item_code: item_code}
    as_of: date_of_service
"""


def write(tmp_path: Path, rules: str, pack: str = PACK) -> Path:
    (tmp_path / "pack.yaml").write_text(pack, encoding="utf-8")
    (tmp_path / "r.yaml").write_text(textwrap.dedent(rules), encoding="utf-8")
    return tmp_path


def failure(tmp_path: Path, rules: str, pack: str = PACK) -> str:
    with pytest.raises(PackError) as info:
        compile_pack(write(tmp_path, rules, pack))
    return str(info.value)


def rule(when: str = "visit_type == 1", **extra: str) -> str:
    """A claim flag rule; ``extra`` keys replace or add lines (values are raw YAML)."""
    fields = {
        "id": "r.one",
        "title": "t",
        "basis": "b",
        "level": "claim",
        "severity": "flag",
        "code": "R_ONE",
        "when": when,
        "message": "m",
    }
    fields.update(extra)
    lines = [f"  {k}: {v}" for k, v in fields.items()]
    return "-" + "\n".join(lines)[1:] + "\n"


# --- shapes (pydantic) ---------------------------------------------------------------


def test_a_good_pack_loads(tmp_path: Path) -> None:
    plan = compile_pack(write(tmp_path, rule()))
    assert [r.id for r in plan.rules] == ["r.one"]
    assert plan.rules[0].source == "r.yaml:1"


def test_unknown_key_in_a_rule(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(wehn="visit_type == 2"))
    assert (
        msg == f"{tmp_path / 'r.yaml'}:9:9: rule r.one: wehn: unknown key 'wehn'. "
        "Did you mean 'when'?"
    )


def test_unknown_key_suggests_for_other_keys(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(severty="flag"))
    assert msg.endswith(
        "rule r.one: severty: unknown key 'severty'. Did you mean one of 'severity', 'set'?"
    )


def test_bad_severity(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(severity="rejct"))
    assert (
        msg == f"{tmp_path / 'r.yaml'}:5:13: rule r.one: severity: "
        "Input should be 'reject', 'adjust' or 'flag'"
    )


def test_missing_key(tmp_path: Path) -> None:
    text = rule().replace("  basis: b\n", "")
    msg = failure(tmp_path, text)
    assert msg == f"{tmp_path / 'r.yaml'}:1:3: rule r.one: 'basis' is required"


def test_bad_code_and_id(tmp_path: Path) -> None:
    assert "rule r.one: code: String should match pattern" in failure(tmp_path, rule(code="r1"))
    assert "rule R.One: id: String should match pattern" in failure(tmp_path, rule(id="R.One"))


def test_adjust_rule_without_set(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(severity="adjust", level="line"))
    assert msg.startswith(f"{tmp_path / 'r.yaml'}:1:3: rule r.one: ")
    assert "an adjust rule must say what it replaces (set: {field: value})" in msg


def test_set_on_a_rule_that_is_not_adjust(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(level="line", set="{unit_price: '1'}"))
    assert "rule r.one" in msg and "only adjust rules may set values" in msg


def test_set_on_a_field_that_cannot_be_set(tmp_path: Path) -> None:
    msg = failure(
        tmp_path, rule(severity="adjust", level="line", set="{amount_insured: unit_price}")
    )
    assert msg.startswith(f"{tmp_path / 'r.yaml'}:9:8: rule r.one: set: ")
    assert (
        "'amount_insured' cannot be set; settable: quantity, unit_price, service_rate, "
        "coverage_rate, benefit_rate" in msg
    )


def test_set_on_a_claim_rule(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(severity="adjust", set="{unit_price: '1'}"))
    assert "rule r.one" in msg and "make this a line rule" in msg


def test_set_value_must_be_a_number(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(severity="adjust", level="line", set="{unit_price: item_code}"))
    assert "rule r.one: set.unit_price needs a number, this is a string" in msg


def test_duplicate_rule_id(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule() + rule(when="visit_type == 2"))
    r = tmp_path / "r.yaml"
    assert msg == f"{r}:9:3: rule r.one is defined twice (first at {r}:1:3)"


def test_duplicate_across_files_and_kinds(tmp_path: Path) -> None:
    write(tmp_path, rule())
    (tmp_path / "s.yaml").write_text("- derive: r.one\n  title: t\n  value: visit_type == 1\n")
    with pytest.raises(
        PackError,
        match=r"s\.yaml:1:3: value r\.one is defined twice "
        r"\(first at .*r\.yaml:1:3\)",
    ):
        compile_pack(tmp_path)


def test_yaml_syntax_error(tmp_path: Path) -> None:
    text = rule() + "- id: r.two\n  title: [unclosed\n  basis: b\n"
    msg = failure(tmp_path, text)
    assert msg.startswith(f"{tmp_path / 'r.yaml'}:11:")
    assert "not valid YAML: expected ',' or ']'" in msg


def test_yaml_syntax_error_tab_indentation(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule() + "\t- id: x\n")
    assert msg.startswith(f"{tmp_path / 'r.yaml'}:9:1: not valid YAML")


def test_item_that_is_not_a_mapping(tmp_path: Path) -> None:
    msg = failure(tmp_path, "- just a string\n")
    assert msg.startswith(f"{tmp_path / 'r.yaml'}:1:3: expected a rule (a mapping with id, when")


# --- expressions: position, rule, caret --------------------------------------------------


def test_unknown_field_in_when(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(when="visit_type == 1 and card_noo == 'x'"))
    assert msg == (
        f"{tmp_path / 'r.yaml'}:7:29: rule r.one, when: unknown name 'card_noo'. "
        "Did you mean one of 'card_no', 'card_holder'?\n"
        "    visit_type == 1 and card_noo == 'x'\n"
        "                        ^"
    )


@pytest.mark.parametrize(
    ("when", "line", "col"),
    [
        # quoted: one more column for the quote
        ("\"visit_type == 1 and card_noo == 'x'\"", 7, 30),
        ("'visit_type == 1 and card_noo == ''x'''", 7, 30),
        # folded block: the name is on the second line of the block, indented 4
        (">\n    visit_type == 1\n    and card_noo == 'x'", 9, 9),
        (">-\n    visit_type == 1 and\n    card_noo == 'x'", 9, 5),
        # literal block
        ("|\n    visit_type == 1\n    and card_noo == 'x'", 9, 9),
        ("|\n      visit_type == 1 and card_noo == 'x'", 8, 27),
        # a plain scalar continued on the next line
        ("visit_type == 1\n    and card_noo == 'x'", 8, 9),
    ],
)
def test_error_positions_in_every_yaml_style(
    tmp_path: Path, when: str, line: int, col: int
) -> None:
    msg = failure(tmp_path, rule(when=when))
    assert msg.startswith(
        f"{tmp_path / 'r.yaml'}:{line}:{col}: rule r.one, when: "
        "unknown name 'card_noo'. Did you mean one of 'card_no', 'card_holder'?"
    )
    text = (tmp_path / "r.yaml").read_text().splitlines()[line - 1]
    assert text[col - 1 :].startswith("card_noo")
    assert msg.endswith("^")


def test_error_at_the_end_of_a_block_expression(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(when=">\n    visit_type == 1\n    and"))
    assert msg.startswith(f"{tmp_path / 'r.yaml'}:9:8: rule r.one, when: expected a value")


def test_unknown_function(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(when="lenght(card_no) > 3"))
    assert msg.startswith(
        f"{tmp_path / 'r.yaml'}:7:9: rule r.one, when: unknown function "
        "'lenght'. Did you mean 'length'?"
    )


def test_type_error_with_hint(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(when="admitted_at > card_valid_to"))
    assert msg.startswith(
        f"{tmp_path / 'r.yaml'}:7:21: rule r.one, when: cannot compare "
        "timestamp with date. Use date_of(...)"
    )


def test_condition_that_is_not_a_condition(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(when="visit_type + 1"))
    assert msg.startswith(
        f"{tmp_path / 'r.yaml'}:7:20: rule r.one, when: expected a bool "
        "expression, this is a integer"
    )


def test_line_field_in_a_claim_rule(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(when="quantity > 1"))
    assert "rule r.one, when: 'quantity' is a line field; in a claim rule use an aggregate" in msg


def test_unknown_param(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(when="visit_type > params.grace_day"))
    assert msg.startswith(
        f"{tmp_path / 'r.yaml'}:7:22: rule r.one, when: unknown parameter "
        "'params.grace_day'. Did you mean 'grace_days'?"
    )


def test_unknown_lookup_column(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(when="facility.levl == 'central'"))
    assert "rule r.one, when: lookup 'facility' has no column 'levl'. Did you mean 'level'?" in msg


def test_error_in_a_message_placeholder(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(message='"card {card_noo} expired"'))
    assert msg.startswith(
        f"{tmp_path / 'r.yaml'}:8:19: rule r.one, message: unknown name "
        "'card_noo'. Did you mean one of 'card_no', 'card_holder'?"
    )
    assert msg.endswith("    card {card_noo} expired\n          ^")


def test_unclosed_message_placeholder(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(message='"card {card_no expired"'))
    assert "rule r.one, message: '{' at character 6 is not closed" in msg


# --- stages -------------------------------------------------------------------------------


def test_reject_rule_reading_computed_eligible(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(severity="reject", when="computed.eligible > 100"))
    assert msg == (
        f"{tmp_path / 'r.yaml'}:5:13: rule r.one: a reject rule cannot read computed "
        "amounts (computed.*): rejections decide what is eligible; use flag"
    )


def test_reject_rule_reading_it_through_a_named_value(tmp_path: Path) -> None:
    text = "- derive: big\n  title: t\n  value: computed.eligible > 100\n" + rule(
        severity="reject", when="big"
    )
    msg = failure(tmp_path, text)
    assert msg.startswith(f"{tmp_path / 'r.yaml'}:8:13: rule r.one: a reject rule cannot read")


def test_adjust_rule_reading_fund_pays(tmp_path: Path) -> None:
    msg = failure(
        tmp_path,
        rule(
            severity="adjust", level="line", when="computed.fund_pays > 1", set="{unit_price: '1'}"
        ),
    )
    assert "rule r.one: an adjust rule cannot read computed.fund_pays" in msg


def test_flag_rule_may_read_computed(tmp_path: Path) -> None:
    plan = compile_pack(write(tmp_path, rule(when="computed.fund_pays > 1")))
    assert plan.rules[0].stage == 2


# --- decision tables ---------------------------------------------------------------------

TABLE = """\
- table: t.rate
  title: A rate
  inputs: [route, visit_type]
  rows:
    - [registered, 1, 100]
{rows}"""


def test_table_last_row_must_match_everything(tmp_path: Path) -> None:
    msg = failure(tmp_path, TABLE.format(rows="    - [any, 2, 80]\n"))
    assert msg == (
        f"{tmp_path / 'r.yaml'}:1:3: table t.rate: the last row must match "
        "everything (all cells 'any'), so every claim gets a value"
    )


def test_table_catch_all_row_before_the_end(tmp_path: Path) -> None:
    msg = failure(tmp_path, TABLE.format(rows="    - [any, any, 80]\n    - [any, 2, 70]\n"))
    assert msg.startswith(f"{tmp_path / 'r.yaml'}:6:7: table t.rate: row 2 matches everything")


def test_table_row_with_wrong_cell_count(tmp_path: Path) -> None:
    msg = failure(tmp_path, TABLE.format(rows="    - [any, 80]\n"))
    assert msg == (
        f"{tmp_path / 'r.yaml'}:6:7: table t.rate: row 2 has 2 cells, expected "
        "2 inputs and 1 result"
    )


def test_table_row_position_in_the_derive_form(tmp_path: Path) -> None:
    text = (
        "- derive: t.rate\n  title: t\n  table:\n    inputs: [route]\n    rows:\n"
        "      - [registered, 1]\n      - [1, 2, 3]\n"
    )
    msg = failure(tmp_path, text)
    assert msg.startswith(f"{tmp_path / 'r.yaml'}:7:9: table t.rate: row 2 has 3 cells")


def test_table_cell_of_the_wrong_type(tmp_path: Path) -> None:
    msg = failure(tmp_path, TABLE.format(rows="    - [any, x, 80]\n    - [any, any, 0]\n"))
    assert msg.startswith(
        f"{tmp_path / 'r.yaml'}:6:7: table t.rate: cell 'x': cannot compare integer with string"
    )


def test_table_results_of_different_types(tmp_path: Path) -> None:
    msg = failure(tmp_path, TABLE.format(rows="    - [any, any, high]\n"))
    assert "table t.rate: row 2: result 'high' does not match the type of the results above" in msg


def test_table_unknown_key(tmp_path: Path) -> None:
    msg = failure(tmp_path, TABLE.format(rows="    - [any, any, 0]\n") + "  basiss: x\n")
    assert msg.startswith(f"{tmp_path / 'r.yaml'}:7:11: table t.rate: unknown key 'basiss'")


def test_table_input_error_points_at_the_input(tmp_path: Path) -> None:
    msg = failure(
        tmp_path,
        TABLE.replace("[route, visit_type]", "[route, visit_typ]").format(
            rows="    - [any, any, 0]\n"
        ),
    )
    assert msg.startswith(
        f"{tmp_path / 'r.yaml'}:3:19: table t.rate, inputs[1]: unknown name "
        "'visit_typ'. Did you mean 'visit_type'?"
    )


# --- commas inside YAML flow collections ------------------------------------------------


def test_commas_in_a_flow_list_expression(tmp_path: Path) -> None:
    text = TABLE.replace("[route, visit_type]", "[coalesce(route, 'x'), visit_type]")
    # YAML itself may choke first ('x') is not a valid flow item) ...
    assert "not valid YAML" in failure(tmp_path, text.format(rows="    - [any, any, 0]\n"))
    # ... or split the call in two: the compiler then says to quote it
    text = TABLE.replace("[route, visit_type]", "[coalesce(route, route), visit_type]")
    msg = failure(tmp_path, text.format(rows="    - [any, any, any, 0]\n"))
    assert msg.startswith(
        f"{tmp_path / 'r.yaml'}:3:26: table t.rate, inputs[0]: expected ',' "
        "or ')' to close the call of coalesce(), found the end of the expression"
    )
    assert "quote it" in msg


def test_commas_in_a_flow_mapping_expression(tmp_path: Path) -> None:
    msg = failure(
        tmp_path,
        rule(
            severity="adjust",
            level="line",
            set="{unit_price: least(unit_price, catalogue.max_unit_price)}",
        ),
    )
    assert msg.startswith(f"{tmp_path / 'r.yaml'}:9:8: rule r.one: set.")
    assert "must be quoted" in msg


def test_quoted_flow_expression_is_fine(tmp_path: Path) -> None:
    plan = compile_pack(
        write(
            tmp_path,
            rule(
                severity="adjust",
                level="line",
                set="{unit_price: 'least(unit_price, catalogue.max_unit_price)'}",
            ),
        )
    )
    assert plan.rules[0].sets[0][0] == "unit_price"


# --- pack.yaml --------------------------------------------------------------------------


def test_unknown_reference_table_in_a_lookup(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(), PACK.replace("table: facilities", "table: facility"))
    assert msg == (
        f"{tmp_path / 'pack.yaml'}:7:5: lookup facility: unknown reference table "
        "'facility'. Did you mean 'facilities'?"
    )


def test_lookup_key_column_that_the_table_lacks(tmp_path: Path) -> None:
    msg = failure(
        tmp_path, rule(), PACK.replace("{facility_id: facility_id}", "{facility: facility_id}")
    )
    assert msg.startswith(
        f"{tmp_path / 'pack.yaml'}:7:5: lookup facility: keys: the table has "
        "no column 'facility' (columns: facility_id, level"
    )


def test_lookup_key_expression_error(tmp_path: Path) -> None:
    msg = failure(
        tmp_path, rule(), PACK.replace("{facility_id: facility_id}", "{facility_id: facilty_id}")
    )
    assert msg.startswith(
        f"{tmp_path / 'pack.yaml'}:8:25: lookup facility, keys.facility_id: unknown name "
        "'facilty_id'. Did you mean 'facility_id'?"
    )


def test_lookup_as_of_error(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(), PACK.replace("as_of: date_of_service", "as_of: quantity"))
    assert msg.startswith(
        f"{tmp_path / 'pack.yaml'}:14:12: lookup catalogue, as_of: expected a date expression, "
        "this is a decimal(3)"
    )
    block = PACK.replace(
        "as_of: date_of_service",
        "as_of: >\n      coalesce(date_of_servic,\n               date_of(ordered_at))",
    )
    msg = failure(tmp_path, rule(), block)
    assert msg.startswith(
        f"{tmp_path / 'pack.yaml'}:15:16: lookup catalogue, as_of: unknown "
        "name 'date_of_servic'. Did you mean 'date_of_service'?"
    )


def test_unknown_key_in_pack_yaml(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(), PACK + "paramz: {}\n")
    assert msg == (
        f"{tmp_path / 'pack.yaml'}:15:9: pack.yaml: paramz: unknown key 'paramz'. "
        "Did you mean 'params'?"
    )


def test_listed_rule_file_missing(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(), PACK + "files: [r.yaml, other.yaml]\n")
    assert "listed rule file other.yaml does not exist" in msg


def test_not_a_pack(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="not a rule pack"):
        compile_pack(tmp_path)
    with pytest.raises(PackError, match=r"rule pack 'no_such_pack' not found.*vn_bhyt"):
        compile_pack("no_such_pack")


# --- the bundled pack -----------------------------------------------------------------------


def test_find_bundled_pack_by_name() -> None:
    folder = find_pack("vn_bhyt")
    assert folder == bundled_root() / "vn_bhyt"
    assert (folder / "pack.yaml").is_file()
    assert find_pack(folder / "pack.yaml") == folder


def test_bundled_pack_compiles() -> None:
    source = read_pack("vn_bhyt")
    assert source.pack.id == "vn_bhyt"
    assert len(source.hash) == 16
    plan = compile_pack("vn_bhyt")
    ids = [r.id for r in plan.rules]
    assert len(ids) == len(set(ids))
    assert {"card.expired", "catalogue.price_ceiling", "benefit.rate_mismatch"} <= set(ids)
    assert {r.id for r in plan.rules if r.severity == "adjust"} == {
        "catalogue.price_ceiling",
        "catalogue.coverage_rate",
        "benefit.rate_mismatch",
    }
    # every rule of the pack is a RuleModel in the source, in file order
    assert ids == [i.model.id for i in source.items if isinstance(i.model, RuleModel)]


def test_expression_that_yaml_reads_as_a_number(tmp_path: Path) -> None:
    msg = failure(tmp_path, rule(severity="adjust", level="line", set="{benefit_rate: 100}"))
    assert msg.startswith(f"{tmp_path / 'r.yaml'}:9:8: rule r.one: set.benefit_rate: ")
    assert "(YAML read 100 as a int: quote the expression)" in msg
    msg = failure(tmp_path, rule(when="true"))
    assert msg.endswith(
        "rule r.one: when: Input should be a valid string "
        "(YAML read True as a bool: quote the expression)"
    )


def test_an_impossible_date_is_a_pack_error_with_its_position(tmp_path: Path) -> None:
    (tmp_path / "pack.yaml").write_text("id: p\nversion: '1'\nparams:\n  cutover: 2021-02-30\n")
    with pytest.raises(PackError, match=r"pack.yaml:4:12: '2021-02-30' is not a valid value"):
        read_pack(tmp_path)
