"""``_elements`` subsetting on its own: what is kept, exact decimals wherever they sit, the tag."""

from __future__ import annotations

import orjson

from dsf_core.server.elements import SUBSETTED, names_for, subset

CONDITION = (
    '{"resourceType":"Condition","id":"c1","meta":{"versionId":"2","tag":[{"system":"http://x","code":"t"}]},'
    '"code":{"coding":[{"system":"http://fhir.de/CodeSystem/bfarm/icd-10-gm","code":"I10"}]},'
    '"subject":{"reference":"Patient/p1","extension":[{"url":"http://x/weight","valueDecimal":1.50}]},'
    '"onsetDateTime":"2020-01-01","_onsetDateTime":{"extension":[{"url":"http://x/e","valueString":"s"}]},'
    '"note":[{"text":"n"}]}'
)


def test_kept_elements_mandatory_ones_and_the_tag() -> None:
    out = orjson.loads(subset(CONDITION, frozenset({"code"})))
    # subject is mandatory in Condition; note is dropped; earlier tags stay
    assert sorted(out) == ["code", "id", "meta", "resourceType", "subject"]
    assert out["meta"]["tag"] == [{"system": "http://x", "code": "t"}, SUBSETTED]


def test_a_choice_element_keeps_its_form_and_its_primitive_extension() -> None:
    out = orjson.loads(subset(CONDITION, ["onset"]))
    assert out["onsetDateTime"] == "2020-01-01" and "_onsetDateTime" in out and "code" not in out


def test_a_decimal_deep_in_a_kept_element_is_written_as_stored() -> None:
    assert '"valueDecimal":1.50' in subset(CONDITION, frozenset({"subject"}))
    assert "1.5" not in subset(CONDITION, frozenset({"code"})).replace("1.50", "")


def test_the_subsetted_tag_is_not_doubled_and_the_same_names_give_the_same_result() -> None:
    once = subset(CONDITION, frozenset({"code"}))
    twice = subset(once, frozenset({"code"}))
    assert orjson.loads(twice)["meta"]["tag"].count(SUBSETTED) == 1
    assert subset(CONDITION, ["code"]) == once


def test_names_for_bare_and_type_qualified_names() -> None:
    assert names_for("Condition", ["subject", "Patient.id"], "Condition") == frozenset({"subject"})
    assert names_for("Patient", ["subject", "Patient.id"], "Condition") == frozenset({"id"})
    assert names_for("Encounter", ["subject"], "Condition") is None
