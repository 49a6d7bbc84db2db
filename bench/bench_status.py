"""`opssecrets status` and `opssecrets rotate`, each against what a team does today.

status: N secret files of 10 keys each. The alternative a team has today to see which keys
exist and how old they are is one `sops decrypt FILE` per file (plus reading `lastmodified`
by eye); `status` reads the plaintext key names and sops metadata, no sops process at all.

rotate: one key of one file. The alternative is a bare `sops set --value-stdin FILE INDEX`
in place. `rotate` does more on purpose (a decrypt first to prove the identity works, the
set on a staged copy, a read-back, the ledger, the atomic rename), so here the ratio shows
what that safety costs.

Run by hand:  python bench/bench_status.py [--sizes 100 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from opssecrets.keys import generate_identity, recipient_for_identity

ROOT = Path(__file__).resolve().parents[1]
KEYS = 10


def sh(args: list[str], cwd: Path, env: dict[str, str], stdin: bytes | None = None) -> None:
    proc = subprocess.run(args, cwd=cwd, env=env, input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{args[0]} failed: {proc.stderr.decode()[-500:]}")


def build(base: Path, files: int, env: dict[str, str], admin: str) -> None:
    (base / "secrets").mkdir(parents=True)
    (base / ".sops.yaml").write_text(
        f"keys:\n  - &admin_dan {admin}\ncreation_rules:\n"
        "  - path_regex: ^secrets/\n    key_groups:\n      - age:\n          - *admin_dan\n"
    )
    sample = base / "secrets" / "s0000.yaml"
    sample.write_text("".join(f"key-{i}: {secrets.token_urlsafe(16)}\n" for i in range(KEYS)))
    sh(["sops", "--disable-version-check", "--config", ".sops.yaml", "encrypt", "-i", "secrets/s0000.yaml"], base, env)
    for i in range(1, files):  # copies of a sops file are valid sops files
        shutil.copyfile(sample, base / "secrets" / f"s{i:04d}.yaml")
    sh(["git", "init", "-q"], base, env)
    sh(["git", "add", "-A"], base, env)
    sh(["git", "-c", "user.name=b", "-c", "user.email=b@example.invalid", "commit", "-qm", "bench"], base, env)


def timed(fn: object, rounds: int) -> float:
    assert callable(fn)
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    identity = generate_identity()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
    env.update({"SOPS_AGE_KEY": identity, "PYTHONPATH": str(ROOT), "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"})
    ops = [sys.executable, "-m", "opssecrets"]
    print("| files | opssecrets status | one sops decrypt per file | ratio (sops / opssecrets) |")
    print("|---:|---:|---:|---:|")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            repo = Path(tmp) / "ops"
            build(repo, size, env, recipient_for_identity(identity))
            ours = timed(lambda repo=repo: sh([*ops, "--repo", str(repo), "status", "--json"], repo, env), args.rounds)
            files = sorted(p.relative_to(repo).as_posix() for p in (repo / "secrets").glob("*.yaml"))

            def loop(repo: Path = repo, files: list[str] = files) -> None:
                for rel in files:
                    sh(["sops", "--disable-version-check", "decrypt", rel], repo, env)

            theirs = timed(loop, 1 if size > 100 else min(args.rounds, 3))
            print(f"| {size} | {ours:.2f} s | {theirs:.2f} s | {theirs / ours:.1f}x |")
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "ops"
        build(repo, 1, env, recipient_for_identity(identity))

        def rotate() -> None:
            value = secrets.token_urlsafe(32).encode()
            sh([*ops, "--repo", str(repo), "rotate", "key-3", "--file", "secrets/s0000.yaml", "--stdin"], repo, env, stdin=value)

        def bare_set() -> None:
            value = b'"' + secrets.token_urlsafe(32).encode() + b'"'
            sh(["sops", "--disable-version-check", "set", "--value-stdin", "secrets/s0000.yaml", '["key-4"]'], repo, env, stdin=value)

        ours = timed(rotate, args.rounds)
        theirs = timed(bare_set, args.rounds)
        print()
        print("| one key | opssecrets rotate | bare sops set | ratio (sops / opssecrets) |")
        print("|---|---:|---:|---:|")
        print(f"| 10-key file | {ours:.2f} s | {theirs:.2f} s | {theirs / ours:.2f}x |")


if __name__ == "__main__":
    main()
