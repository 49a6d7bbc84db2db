"""Inputs the fuzzers (fuzz/fuzz_opssecrets.py) found, kept so the fixes stay fixed.

Each parser of untrusted bytes may raise only our own error types, and must finish in
well under a second per megabyte. Crash inputs live in tests/fuzz_corpus/, named
``<target>-<what>.bin``; small ones are also written out here as literals.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
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


# -- hostile shapes found by hand while fuzzing: nesting and aliases ----------------------------

ALIAS_BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdef", "bcdefg", strict=True)
)  # 9**7 values once expanded, in 300 bytes
HOSTILE = {
    "deep-flow": b"[" * 20_000 + b"]" * 20_000,  # ruamel and libyaml: quadratic in depth
    "deep-flow-map": b"{a: " * 3_000 + b"1" + b"}" * 3_000,  # ruamel/to_data: RecursionError
    "deep-compact-seq": b"- " * 200_000 + b"x",  # libyaml: segmentation fault
    "many-brackets": b"[]" * 500_000 + b"[" * 65,  # the depth check itself must stay linear
    "alias-bomb-config": (ALIAS_BOMB + "creation_rules: [{age: *g}]\n").encode(),  # exponential flattening
    "alias-bomb-sops-file": (ALIAS_BOMB + "sops:\n  mac: ENC[AES256_GCM,data:x,type:str]\n  version: 3.11.0\n").encode(),
    "merge-chain": (
        "x0: &x0 {age: k}\n" + "".join(f"x{i}: &x{i} {{<<: *x{i - 1}}}\n" for i in range(1, 3000)) + "creation_rules: [*x2999]\n"
    ).encode(),  # to_data: RecursionError through merges
}


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_yaml_is_refused_quickly_and_never_crashes_the_process(name: str, target: str) -> None:
    # in a child process: a regression to the libyaml crash must fail this test, not kill pytest
    code = (
        "import sys, time; sys.path.insert(0, 'tests'); "
        "from test_fuzz_regressions import HOSTILE, within_budget; "
        f"within_budget({target!r}, HOSTILE[{name!r}]); print('ok')"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.returncode, proc.stderr[-2000:])


def test_hostile_config_messages_say_what_is_wrong() -> None:
    with pytest.raises(OpsError, match=r"is 4200 KiB; real .sops.yaml files are at most a few hundred KiB \(the limit here is 4 MiB\)"):
        SopsConfig("# padding\n" * 430080)
    with pytest.raises(OpsError, match=r"line 1: nested more than 64 levels deep"):
        SopsConfig(HOSTILE["deep-flow"].decode())
    with pytest.raises(OpsError, match=r"alias bomb"):
        SopsConfig(HOSTILE["alias-bomb-config"].decode())
    (problem,) = lint_text("creation_rules:\n" + "- " * 100 + "x\n")
    assert problem.level == "error" and "nested more than 64 levels" in problem.message
    view = load_config(HOSTILE["deep-compact-seq"])
    assert view.problem is not None and view.problem.rule == "sops-config-invalid"
    view = load_config(HOSTILE["alias-bomb-config"])
    assert view.problem is not None and "more than 10000 keys" in view.problem.message


def test_alias_bomb_in_a_sops_file_is_a_finding_not_a_hang() -> None:
    findings = check_covered_file("secrets.yaml", HOSTILE["alias-bomb-sops-file"], RULE)
    assert any(f.rule == "sops-unencrypted" and "aliases" in f.message for f in findings)


def test_key_group_with_a_mapping_then_a_plain_identifier() -> None:
    # kms: [{arn: a}, b] made dict("b") raise ValueError in SopsConfig, lint and the guard
    text = "creation_rules:\n  - key_groups:\n      - kms: [{arn: a}, b]\n        age: x\n"
    assert SopsConfig(text).rules[0].groups[0].other == (("kms", "arn=a"), ("kms", "b"))
    lint_text(text)
    assert load_config(text.encode()).problem is None
    mixed_keys = "creation_rules:\n  - key_groups:\n      - kms: [{1: a, b: c}]\n"  # int and str keys: sorted() raised TypeError
    assert SopsConfig(mixed_keys).rules[0].groups[0].other == (("kms", "1=a,b=c"),)


def test_flattened_metadata_with_a_huge_list_index() -> None:
    # sops_age__list_<huge>__map_recipient made _unflatten grow a list to that length (a hang)
    for name, text in (
        ("secrets.env", "A=1\nsops_age__list_999999999999__map_recipient=x\nsops_version=3.11.0\n"),
        ("secrets.ini", "[db]\na = 1\n[sops]\nage__list_999999999999__map_recipient = x\nversion = 3.11.0\n"),
    ):
        start = time.process_time()
        with pytest.raises(NotASopsFile):
            read_secret_file(Path(name), text)
        findings = check_covered_file(name, text.encode(), RULE)
        assert [f.rule for f in findings] == ["sops-unencrypted"]
        assert time.process_time() - start < 1.0
