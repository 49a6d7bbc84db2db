"""Fuzz the parsers that read untrusted bytes (run by hand; see docs/fuzzing.md).

Targets:
  sopsconfig  ``SopsConfig(text)`` and ``lint_text(text)``: the ``.sops.yaml`` loader
  sopsfiles   ``load_config``, ``check_covered_file`` and ``read_secret_file`` for each
              sops format (yaml, json, dotenv, ini, binary): the sops-file structure checker
  scanner     ``LeakScanner.scan`` with the default leak policy

A crash is any exception other than our own error types (``OpsError``, ``NotASopsFile``),
or a call slower than a second per megabyte (one second at least). The failing input is
written to ``fuzz/crashes/<target>-<sha>.bin`` and the run stops.

  python fuzz/fuzz_opssecrets.py sopsconfig -max_total_time=600 fuzz/seeds/sopsconfig
  python fuzz/fuzz_opssecrets.py --seeds fuzz/seeds   # write the seed corpora

Uses atheris (``pip install atheris``) when it imports, else hypothesis with a time budget
(``--hypothesis SECONDS``).
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SLOW_SECONDS_PER_MB = 1.0
FORMATS = ("secrets.yaml", "secrets.json", "secrets.env", "secrets.ini", "blob.bin")


class Hang(Exception):
    pass


def _timed(data: bytes, call: Callable[[], object]) -> None:
    # CPU time, not wall time: a loaded machine must not look like a hang
    start = time.process_time()
    call()
    elapsed = time.process_time() - start
    budget = max(1.0, SLOW_SECONDS_PER_MB * len(data) / 1_000_000)
    if elapsed > budget:
        raise Hang(f"{elapsed:.2f}s for {len(data)} bytes")


def target_sopsconfig(data: bytes) -> None:
    from opssecrets.errors import OpsError
    from opssecrets.lint import lint_text
    from opssecrets.sopsconfig import SopsConfig

    text = data.decode("utf-8", "replace")

    def call() -> None:
        try:
            config = SopsConfig(text, "fuzz.sops.yaml")
            assert config.text == text
        except OpsError:
            pass
        lint_text(text, "fuzz.sops.yaml")

    _timed(data, call)


def target_sopsfiles(data: bytes) -> None:
    from opssecrets.errors import OpsError
    from opssecrets.guard.sopsfiles import check_covered_file, load_config
    from opssecrets.rules import CreationRule, KeyGroup
    from opssecrets.secretfile import NotASopsFile, read_secret_file

    rule = CreationRule(0, None, (KeyGroup(age=("age1" + "q" * 58,)),))

    def call() -> None:
        load_config(data)
        for name in FORMATS:
            check_covered_file(name, data, rule)
            with contextlib.suppress(NotASopsFile, OpsError):
                read_secret_file(Path(name), data.decode("utf-8", "replace"))

    _timed(data, call)


_scanner = None


def target_scanner(data: bytes) -> None:
    global _scanner
    if _scanner is None:
        from opssecrets.guard.scanner import LeakScanner
        from opssecrets.policy_leaks import load_leak_policy

        _scanner = LeakScanner(load_leak_policy(HERE))
    scanner = _scanner
    _timed(data, lambda: scanner.scan("fuzz.txt", data))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "sopsconfig": target_sopsconfig,
    "sopsfiles": target_sopsfiles,
    "scanner": target_scanner,
}


def _guarded(name: str, target: Callable[[bytes], None]) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        try:
            target(data)
        except BaseException:
            crashes = HERE / "crashes"
            crashes.mkdir(exist_ok=True)
            (crashes / f"{name}-{hashlib.sha256(data).hexdigest()[:12]}.bin").write_bytes(data)
            raise

    return run


def write_seeds(folder: Path) -> None:
    """Seed corpora: the shared .sops.yaml corpus, real sops files, text with tokens."""
    import os
    import subprocess
    import tempfile

    sys.path.insert(0, str(HERE.parent / "tests"))
    import guard_support as guard_tokens  # type: ignore[import-not-found]

    from opssecrets.keys import generate_identity, recipient_for_identity

    configs = folder / "sopsconfig"
    configs.mkdir(parents=True, exist_ok=True)
    corpus = HERE.parent.parent / "shared" / "corpus" / "sops-configs"
    for path in sorted(corpus.glob("*.yaml")):
        (configs / path.name).write_bytes(path.read_bytes())
    files = folder / "sopsfiles"
    files.mkdir(parents=True, exist_ok=True)
    identity = generate_identity()
    recipient = recipient_for_identity(identity)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / ".sops.yaml").write_text(f"creation_rules:\n  - age: {recipient}\n")
        plain = {
            "a.yaml": "db:\n  password: hunter2x\n  port: 5432\nlist:\n  - one\n  - two\n",
            "a.json": '{"db": {"password": "hunter2x", "n": [1, 2]}}',
            "a.env": "PASSWORD=hunter2x\nUSER=bob\n",
            "a.ini": "[db]\npassword = hunter2x\n",
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
        for name, text in plain.items():
            (root / name).write_text(text)
            subprocess.run(["sops", "--disable-version-check", "encrypt", "-i", name], cwd=root, env=env, check=True, capture_output=True)
            (files / name).write_bytes((root / name).read_bytes())
            (files / ("plain-" + name)).write_text(text)
    leaks = folder / "scanner"
    leaks.mkdir(parents=True, exist_ok=True)
    makers = [
        guard_tokens.slack_bot, guard_tokens.slack_user, guard_tokens.slack_app, guard_tokens.slack_webhook,
        guard_tokens.matrix_token, guard_tokens.age_identity, guard_tokens.pem_block, guard_tokens.openssh_block,
        guard_tokens.github_classic, guard_tokens.gitlab, guard_tokens.aws_key,
    ]  # fmt: skip
    for i, make in enumerate(makers):
        (leaks / f"token-{i}.txt").write_text(f"config:\n  token: {make()}\n")
    (leaks / "generic.env").write_text(f"API_SECRET={guard_tokens.generic_value()}\n")


def main() -> int:
    args = sys.argv[1:]
    if args and args[0] == "--seeds":
        write_seeds(Path(args[1]))
        return 0
    if len(args) >= 3 and args[0] == "--hypothesis":
        return _hypothesis(args[1], float(args[2]))
    if not args or args[0] not in TARGETS:
        sys.stderr.write(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [atheris options] [corpus dirs]\n")
        return 2
    name = args[0]
    import atheris

    # instrument first: a module imported before this block would give libFuzzer no coverage
    with atheris.instrument_imports(include=["opssecrets"]):
        import opssecrets.guard.scanner
        import opssecrets.guard.sopsfiles
        import opssecrets.lint
        import opssecrets.secretfile
        import opssecrets.sopsconfig  # noqa: F401
    TARGETS[name](b"")  # warm up: imports and policy loading are not the input's cost
    atheris.Setup([sys.argv[0], *args[1:]], _guarded(name, TARGETS[name]))
    atheris.Fuzz()
    return 0


def _hypothesis(name: str, seconds: float) -> int:
    """The fallback: random bytes and text through hypothesis for ``seconds``."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    target = _guarded(name, TARGETS[name])
    deadline = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < deadline:

        @settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(st.one_of(st.binary(max_size=4096), st.text(max_size=2048).map(lambda t: t.encode("utf-8", "surrogatepass"))))
        def once(data: bytes) -> None:
            target(data)

        once()
        runs += 500
    print(f"{name}: {runs} inputs in {seconds:.0f}s, no crash")
    return 0


if __name__ == "__main__":
    sys.exit(main())
