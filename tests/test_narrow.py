"""opsloop.narrow: the strict readers refuse what is not of their type, naming it; the lenient ones give empty."""

from __future__ import annotations

import ast
import json
import math
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

import opsloop
from opsloop import narrow
from opsloop.narrow import (
    NarrowError,
    as_float,
    as_int,
    as_str,
    json_list,
    json_object,
    json_objects,
    mapping,
    number,
    opt_bytes,
    opt_float,
    opt_int,
    opt_number,
    opt_str,
    records,
)


@pytest.mark.parametrize(("value", "expected"), [
    (0, 0), (-7, -7), (2**70, 2**70), (3.0, 3), (Decimal("12"), 12), (Decimal("12.000"), 12), ("42", 42),
    (" -5 ", -5), (b"9", 9),
])
def test_as_int_reads_integers_in_any_form(value: object, expected: int) -> None:
    out = as_int(value)
    assert out == expected and type(out) is int


@pytest.mark.parametrize("value", [
    True, False, math.nan, math.inf, -math.inf, 3.5, Decimal("1.5"), Decimal("NaN"), "4.0", "four", "", None,
    [1], {"a": 1}, object(),
])
def test_as_int_refuses_bool_nan_fractions_and_other_kinds(value: object) -> None:
    with pytest.raises(NarrowError, match=r"^wf_runs\.attempts should be an integer, not "):
        as_int(value, "wf_runs.attempts")


def test_the_error_is_a_type_error_and_a_value_error_and_shows_a_long_value_cut() -> None:
    with pytest.raises(TypeError):
        as_int("x" * 500)
    with pytest.raises(ValueError) as caught:
        as_int("x" * 500)
    assert len(str(caught.value)) < 140
    assert str(caught.value).endswith("... (str)")


def test_as_int_reads_what_the_drivers_return() -> None:
    con = sqlite3.connect(":memory:")
    count, total, text = con.execute("SELECT COUNT(*), SUM(x), CAST(7 AS TEXT) FROM (SELECT 2.0 AS x)").fetchone()
    assert (as_int(count), as_int(total), as_int(text)) == (1, 2, 7)
    np = pytest.importorskip("numpy")
    assert as_int(np.int64(5)) == 5 and type(as_int(np.int64(5))) is int
    assert as_int(np.float64(6.0)) == 6
    with pytest.raises(NarrowError):
        as_int(np.float64("nan"))
    with pytest.raises(NarrowError):
        as_int(np.bool_(True))


@pytest.mark.parametrize(("value", "expected"), [
    (1, 1.0), (2.5, 2.5), (Decimal("0.25"), 0.25), ("1e3", 1000.0), (math.inf, math.inf), ("-inf", -math.inf),
])
def test_as_float_reads_numbers_and_their_text(value: object, expected: float) -> None:
    out = as_float(value)
    assert out == expected and type(out) is float


@pytest.mark.parametrize("value", [True, math.nan, "nan", "1,5", None, [], {}])
def test_as_float_refuses_bool_nan_and_other_kinds(value: object) -> None:
    with pytest.raises(NarrowError, match=r"^the created time should be a number, not "):
        as_float(value, "the created time")


def test_as_str_takes_only_text() -> None:
    assert as_str("") == "" and as_str("run-1") == "run-1"
    for value in (1, 1.5, b"x", None, True):
        with pytest.raises(NarrowError, match=r"wf_runs\.id should be text"):
            as_str(value, "wf_runs.id")


def test_opt_readers_keep_none_and_narrow_the_rest() -> None:
    assert (opt_int(None), opt_float(None), opt_str(None), opt_number(None)) == (None, None, None, None)
    assert (opt_int("3"), opt_float(3), opt_str("a")) == (3, 3.0, "a")
    for read in (opt_int, opt_float, opt_str):
        with pytest.raises(NarrowError, match="lease_until"):
            read([], "lease_until")


def test_opt_bytes_reads_what_both_drivers_return_for_a_blob() -> None:
    con = sqlite3.connect(":memory:")
    (blob,) = con.execute("SELECT CAST('ab' AS BLOB)").fetchone()
    assert opt_bytes(blob) == b"ab" and opt_bytes(None) is None
    assert opt_bytes(memoryview(b"cd")) == b"cd" and type(opt_bytes(bytearray(b"e"))) is bytes
    for value in ("ab", 1, [98]):
        with pytest.raises(NarrowError, match=r"^events\.body should be bytes or None"):
            opt_bytes(value, "events.body")


def test_opt_number_keeps_an_int_an_int_and_refuses_bool_and_text() -> None:
    assert type(opt_number(5)) is int and opt_number(2.5) == 2.5
    assert math.isnan(opt_number(math.nan) or 0.0)  # a period with no value reads as NaN on some engines
    for value in (True, "5", Decimal("5")):
        with pytest.raises(NarrowError, match="a metric value should be a number or None"):
            opt_number(value, "a metric value")


@pytest.mark.parametrize(("value", "expected"), [
    (0, 0), (1.5, 1.5), (-3, -3), (True, None), (False, None), (math.nan, None), ("5", None), (None, None),
    ([1], None), ({"a": 1}, None),
])
def test_number_is_lenient(value: object, expected: object) -> None:
    assert number(value) == expected and type(number(value)) is type(expected)


def test_mapping_gives_text_keys_and_empty_for_other_shapes() -> None:
    assert mapping({"a": 1, 2: [3], None: {"nested": True}}) == {"a": 1, "2": [3], "None": {"nested": True}}
    for value in (None, [("a", 1)], "a=1", 3, ["{}"]):
        assert mapping(value) == {}
    inner = {"deep": [1]}
    assert mapping({"x": inner})["x"] is inner  # one level: nested values are the caller's to narrow


def test_records_keeps_only_the_objects_of_a_list() -> None:
    assert records([{"a": 1}, 2, "x", None, [{"b": 2}], {3: "c"}]) == [{"a": 1}, {"3": "c"}]
    assert records({"a": 1}) == [] and records(None) == [] and records("[{}]") == []


def test_json_readers_on_what_json_loads_gives() -> None:
    answer = json.loads('{"results": [{"id": 1}, 2, null, {"id": 2, "tags": ["a"]}], "next": null, "n": 3}')
    assert json_objects(json_object(answer).get("results")) == [{"id": 1}, {"id": 2, "tags": ["a"]}]
    assert json_list(json_object(answer).get("results"))[1] == 2
    assert json_object(answer).get("next") is None
    assert json_object(json.loads("[1, 2]")) == {} and json_object(None) == {} and json_object("{}") == {}
    assert json_list(json.loads('{"a": []}')) == [] and json_list(None) == [] and json_list("[]") == []
    assert json_objects(json.loads('[[{"a": 1}]]')) == [] and json_objects(3) == []
    parsed = json.loads('{"a": {"b": 1}}')
    assert json_object(parsed) is parsed  # the same object: a JSON object is already what the reader needs


def test_public_surface_and_no_opsloop_import() -> None:
    source = Path(narrow.__file__).read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("opsloop"), ast.unparse(node)
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("opsloop") for a in node.names), ast.unparse(node)
    defined = {n for n in vars(narrow) if not n.startswith("_")} - {"annotations", "math", "Mapping", "Decimal",
                                                                    "SupportsFloat", "SupportsIndex", "SupportsInt",
                                                                    "TypeAlias"}
    assert set(narrow.__all__) == defined
    assert opsloop._json.JsonValue is narrow.JsonValue  # the old home re-exports the same alias
