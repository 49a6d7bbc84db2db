"""One reader for dotenv and INI files (secretfile.flat_entries): the tree it builds is
configparser's for INI and sops' for dotenv, and the guard reads the same entries."""

from __future__ import annotations

import configparser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opssecrets.secretfile import flat_entries, parse_tree

INI_LINES = st.lists(
    st.sampled_from(
        [
            "[db]",
            "[sops]",
            "[DEFAULT]",
            "[a b]",
            "key = value",
            "key=v2",
            "Other: x = y",
            "  indented continuation",
            "",
            "   ",
            "# comment",
            "; comment",
            "version = 3.11.0",
            "age__list_0__map_recipient = age1abc",
            "mac = ENC[AES256_GCM,data:x]",
            "no delimiter",
            " = empty key",
            "url = http://host:1/x",
        ]
    ),
    max_size=12,
)


def configparser_tree(text: str) -> tuple[dict[str, dict[str, str]], dict[str, str] | None]:
    """What opssecrets read INI with before flat_entries (configparser), metadata left flat."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    tree = {section: dict(parser[section]) for section in parser.sections() if section != "sops"}
    meta = dict(parser["sops"]) if parser.has_section("sops") else None
    return tree, meta


@settings(max_examples=400, deadline=None)
@given(INI_LINES)
def test_ini_reads_as_configparser_does(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    try:
        expected = configparser_tree(text)
    except configparser.Error:
        with pytest.raises(configparser.Error):
            parse_tree("x.ini", text)
        return
    tree, _ = parse_tree("x.ini", text)
    assert tree == expected[0]
    sops_values = {e.key: e.value for e in flat_entries(text, "ini") if e.section in ("sops", "DEFAULT")}
    assert (expected[1] is None) == ("[sops]" not in lines)
    if expected[1] is not None:
        assert set(expected[1]) == set(sops_values)


def test_entries_carry_their_lines_and_continuations() -> None:
    text = "; top\n[db]\npassword: hunter\n  two\n\nuser = admin\n[DEFAULT]\nport = 5\n"
    entries = [(e.section, e.key, e.value, e.line) for e in flat_entries(text, "ini")]
    assert entries == [("db", "password", "hunter\ntwo", 3), ("db", "user", "admin", 6), ("DEFAULT", "port", "5", 8)]
    assert parse_tree("x.ini", text)[0] == {"db": {"password": "hunter\ntwo", "user": "admin", "port": "5"}}


def test_dotenv_splits_at_the_first_equals_and_keeps_the_rest() -> None:
    text = "# c\nA=b=c\n\nnot a pair\nsops_version=3.11.0\nB= spaced \n"
    assert [(e.key, e.value, e.line) for e in flat_entries(text, "dotenv")] == [
        ("A", "b=c", 2),
        ("sops_version", "3.11.0", 5),
        ("B", " spaced ", 6),
    ]
    tree, meta = parse_tree("x.env", text)
    assert tree == {"A": "b=c", "B": " spaced "}
    assert meta == {"version": "3.11.0"}
