"""`opssecrets lint`: each error and warning, on real `.sops.yaml` text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opssecrets.lint import lint_text
from tests.conftest import AgeKey, OpsRepo


def _config(*rules: str, keys: str = "") -> str:
    return (f"keys:\n{keys}" if keys else "") + "creation_rules:\n" + "".join(rules)


def _messages(text: str, level: str = "error") -> list[str]:
    return [p.message for p in lint_text(text) if p.level == level]


@pytest.fixture
def people() -> dict[str, str]:
    return {name: AgeKey.new().recipient for name in ("dan", "ann", "host")}


def _clean(people: dict[str, str]) -> str:
    keys = f"  - &admin_dan {people['dan']}\n  - &admin_ann {people['ann']}\n  - &host_clarun {people['host']}\n"
    readers = "".join(f"          - *{name}\n" for name in ("admin_dan", "admin_ann", "host_clarun"))
    rule = "  - path_regex: ^secrets/\n    key_groups:\n      - age:\n" + readers
    return _config(rule, keys=keys)


def test_a_healthy_file_is_clean(people: dict[str, str]) -> None:
    assert lint_text(_clean(people)) == []


def test_a_key_with_one_wrong_character(people: dict[str, str]) -> None:
    text = _clean(people)
    key = people["ann"]
    broken = key[:-3] + ("q" if key[-3] != "q" else "p") + key[-2:]
    assert any("not a valid age recipient" in m for m in _messages(text.replace(key, broken)))


def test_an_alias_without_anchor(people: dict[str, str]) -> None:
    text = _clean(people).replace("          - *admin_ann\n", "          - *admin_nobody\n")
    assert any("alias *admin_nobody has no anchor &admin_nobody anywhere in the file" in m for m in _messages(text))
    # an anchor that exists, but below its first use, is the other mistake
    later = _clean(people).replace("keys:\n", "keys:\n  - unused: *admin_ann\n", 1)
    assert any("alias *admin_ann is used before its anchor" in m for m in _messages(later))


def test_a_regex_that_does_not_compile(people: dict[str, str]) -> None:
    text = _clean(people).replace("^secrets/", "^secrets/(unclosed")
    assert any("does not compile" in m for m in _messages(text))


def test_an_unreachable_rule(people: dict[str, str]) -> None:
    later = "  - path_regex: ^secrets/projects/web/\n    age: " + people["dan"] + "\n"
    assert any("unreachable: rule 1" in m for m in _messages(_clean(people) + later))
    # the other order is fine: the narrow rule first
    text = _config(later, "  - path_regex: ^secrets/\n    age: " + people["dan"] + "\n")
    assert not any("unreachable" in m for m in _messages(text))


def test_a_rule_that_shadows_only_some_paths_is_not_reported(people: dict[str, str]) -> None:
    first = f"  - path_regex: \\.yaml$\n    age: {people['dan']}\n"
    second = f"  - path_regex: ^secrets/.*\\.(yaml|json)$\n    age: {people['dan']}\n"
    assert not any("unreachable" in m for m in _messages(_config(first, second)))


def test_duplicate_names_and_keys(people: dict[str, str]) -> None:
    text = _clean(people)
    dup_name = text.replace("  - &host_clarun", f"  - &admin_dan {AgeKey.new().recipient}\n  - &host_clarun")
    assert any("defined 2 times" in m for m in _messages(dup_name))
    dup_key = text.replace("  - &host_clarun", f"  - &admin_zed {people['dan']}\n  - &host_clarun")
    assert any("one key has 2 names" in m for m in _messages(dup_key))


def test_a_name_sops_cannot_parse(people: dict[str, str]) -> None:
    text = _clean(people).replace("&admin_ann", "&ann.x").replace("*admin_ann", "*ann.x")
    assert any("not valid YAML" in m and "letters, digits, '_' and '-'" in m for m in _messages(text))


def test_warnings_no_host_and_a_single_admin(people: dict[str, str]) -> None:
    text = _clean(people).replace("          - *host_clarun\n", "").replace("          - *admin_ann\n", "")
    warnings = _messages(text, "warning")
    assert any("no host reads this rule" in m for m in warnings)
    assert any("1 admin(s) read this rule" in m for m in warnings)
    assert _messages(text) == []  # warnings only


def test_a_misspelt_rule_key_is_named(people: dict[str, str]) -> None:
    text = _clean(people).replace("path_regex", "path_regexp")
    assert any("did you mean path_regex" in m for m in _messages(text, "warning"))


def test_every_corpus_file_lints_without_crashing(corpus: Path) -> None:
    for path in sorted(corpus.glob("*.yaml")):
        for problem in lint_text(path.read_text(), path.name):
            assert problem.level in ("error", "warning")


def test_lint_command_exit_codes_and_json(repo: OpsRepo, people: dict[str, str]) -> None:
    repo.write(".sops.yaml", _clean(people))
    clean = repo.ops("lint")
    assert clean.code == 0 and "ok" in clean.out
    repo.write(".sops.yaml", _clean(people).replace("^secrets/", "^secrets/("))
    broken = repo.ops("lint", "--json")
    assert broken.code == 1
    assert json.loads(broken.out)["problems"][0]["level"] == "error"


def test_key_groups_without_threshold_warn_and_an_impossible_threshold_is_an_error(people: dict[str, str]) -> None:
    keys = f"  - &admin_dan {people['dan']}\n  - &host_clarun {people['host']}\n"
    groups = "  - path_regex: ^secrets/\n    key_groups:\n      - age: [*admin_dan]\n      - age: [*host_clarun]\n"
    text = _config(groups, keys=keys)
    warnings = _messages(text, "warning")
    assert any("2 key groups and no shamir_threshold" in m and "sops-nix#295" not in m for m in warnings)
    assert not any("shamir_threshold" in m for m in _messages(text))

    one = text.replace("    key_groups:", "    shamir_threshold: 1\n    key_groups:")
    assert not any("shamir_threshold" in m for m in _messages(one, "warning") + _messages(one))

    three = text.replace("    key_groups:", "    shamir_threshold: 3\n    key_groups:")
    assert any("shamir_threshold is 3 but the rule has 2 key group(s)" in m for m in _messages(three))
    # one group needs no threshold
    assert not any("shamir_threshold" in m for m in _messages(_clean(people), "warning"))
