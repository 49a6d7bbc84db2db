"""Inputs the fuzzers (fuzz/fuzz_opssecrets.py) found, kept so the fixes stay fixed.

Each parser of untrusted bytes may raise only our own error types, and must finish in
well under a second per megabyte. Crash inputs live in tests/fuzz_corpus/, named
``<target>-<what>.bin``; small ones are also written out here as literals.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from opssecrets.errors import OpsError
from opssecrets.guard.scanner import LeakScanner
from opssecrets.guard.sopsfiles import check_covered_file, load_config
from opssecrets.lint import lint_text
from opssecrets.policy_leaks import load_leak_policy
from opssecrets.rules import CreationRule, KeyGroup
from opssecrets.secretfile import NotASopsFile, read_secret_file
from opssecrets.sopsconfig import SopsConfig

CORPUS = Path(__file__).parent / "fuzz_corpus"
FORMATS = ("secrets.yaml", "secrets.json", "secrets.env", "secrets.ini", "blob.bin")
RULE = CreationRule(0, None, (KeyGroup(age=("age1" + "q" * 58,)),))


def run_sopsconfig(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    with contextlib.suppress(OpsError):
        assert SopsConfig(text, "fuzz.sops.yaml").text == text
    lint_text(text, "fuzz.sops.yaml")


def run_sopsfiles(data: bytes) -> None:
    load_config(data)
    for name in FORMATS:
        check_covered_file(name, data, RULE)
        with contextlib.suppress(NotASopsFile, OpsError):
            read_secret_file(Path(name), data.decode("utf-8", "replace"))


def run_scanner(data: bytes) -> None:
    LeakScanner(load_leak_policy(CORPUS)).scan("fuzz.txt", data)


TARGETS = {"sopsconfig": run_sopsconfig, "sopsfiles": run_sopsfiles, "scanner": run_scanner}


def within_budget(target: str, data: bytes) -> None:
    TARGETS[target](b"")  # imports and policy loading are not the input's cost
    start = time.process_time()
    TARGETS[target](data)
    assert time.process_time() - start < max(1.0, len(data) / 1_000_000)


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.bin")), ids=lambda p: p.stem)
def test_corpus_input_is_handled(path: Path) -> None:
    target = path.name.split("-", 1)[0]
    within_budget(target, path.read_bytes())


def test_corpus_is_there() -> None:
    assert {p.name.split("-", 1)[0] for p in CORPUS.glob("*.bin")} >= {"sopsconfig", "sopsfiles"}


def test_lint_with_a_broken_regex_before_a_rule_without_path_regex() -> None:
    # lint compared the later rule's samples against the earlier rule's regex, which does
    # not compile: re.error escaped as an internal error
    text = "creation_rules:\n  - path_regex: a)\n    age: x\n  - age: y\n"
    problems = lint_text(text)
    assert any("does not compile" in p.message for p in problems)
