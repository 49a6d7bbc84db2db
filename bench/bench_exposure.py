"""`opssecrets exposure` against the naive loop, on a generated history of V versions.

The repository: F sops files of 10 keys each for dan (the operator) and alice, then V
commits; commit i sets one key of file i % F to a new value with `sops set` (so every
commit makes a new version) and edits a plaintext host file. Half-way, alice is removed by
hand (`.sops.yaml` edited, `sops updatekeys`, no rotation), so there is something to find.

The naive loop is what a team could script today: for every commit, for every current sops
file, `git show COMMIT:FILE | sops decrypt` (one sops process per file per commit), values
compared afterwards. `opssecrets exposure --json` runs as a real process (start-up
included) and also opens data keys with age and scans every blob for plaintext, which the
loop does not. With --gitleaks PATH, `gitleaks git` on the same history is timed too.

Run by hand:  python bench/bench_exposure.py [--versions 500] [--files 5] [--gitleaks PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from opssecrets.keys import generate_identity, recipient_for_identity

ROOT = Path(__file__).resolve().parents[1]
KEYS = 10
SOPS = ["sops", "--disable-version-check", "--config", ".sops.yaml"]


def sh(args: list[str], cwd: Path, env: dict[str, str], stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(args, cwd=cwd, env=env, input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{args[0]} failed: {proc.stderr.decode()[-500:]}")
    return proc.stdout


def config(readers: dict[str, str]) -> str:
    keys = "".join(f"  - &{name} {key}\n" for name, key in readers.items())
    refs = "".join(f"          - *{name}\n" for name in readers)
    return f"keys:\n{keys}creation_rules:\n  - path_regex: ^secrets/\n    key_groups:\n      - age:\n{refs}"


def build(base: Path, files: int, versions: int, env: dict[str, str], readers: dict[str, str]) -> None:
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.invalid"]
    (base / "secrets").mkdir(parents=True)
    (base / "hosts").mkdir()
    sh(["git", "init", "-q"], base, env)
    (base / ".sops.yaml").write_text(config(readers))
    for f in range(files):
        rel = f"secrets/s{f}.yaml"
        (base / rel).write_text("".join(f"key-{i}: {secrets.token_urlsafe(24)}\n" for i in range(KEYS)))
        sh([*SOPS, "encrypt", "-i", rel], base, env)
    sh(["git", "add", "-A"], base, env)
    sh([*git, "commit", "-qm", "start"], base, env)
    for i in range(versions):
        if i == versions // 2:
            (base / ".sops.yaml").write_text(config({"admin_dan": readers["admin_dan"]}))
            sh([*SOPS, "updatekeys", "-y", *(f"secrets/s{f}.yaml" for f in range(files))], base, env)
        rel = f"secrets/s{i % files}.yaml"
        value = json.dumps(secrets.token_urlsafe(24)).encode()
        sh([*SOPS, "set", "--value-stdin", rel, f'["key-{i % KEYS}"]'], base, env, stdin=value)
        (base / "hosts" / f"h{i % 7}.nix").write_text(f"{{ networking.hostName = \"h{i}\"; }}\n")
        sh(["git", "add", "-A"], base, env)
        sh([*git, "commit", "-qm", f"v{i}"], base, env)


def naive(base: Path, env: dict[str, str]) -> int:
    files = sorted(p.relative_to(base).as_posix() for p in (base / "secrets").glob("*.yaml"))
    commits = sh(["git", "rev-list", "HEAD"], base, env).decode().split()
    values: set[bytes] = set()
    for commit in commits:
        for rel in files:
            blob = subprocess.run(["git", "show", f"{commit}:{rel}"], cwd=base, capture_output=True, check=False).stdout
            if not blob:
                continue
            proc = subprocess.run(
                [*SOPS, "decrypt", "--input-type", "yaml", "--output-type", "json", "/dev/stdin"],
                cwd=base, env=env, input=blob, capture_output=True, check=False,
            )  # fmt: skip
            if proc.returncode == 0:
                values.update(str(v).encode() for v in json.loads(proc.stdout).values())
    return len(commits) * len(files)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", type=int, default=500)
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--gitleaks", default=None, help="a gitleaks binary, to time 'gitleaks git' on the same history")
    args = parser.parse_args()
    dan, alice = generate_identity(), generate_identity()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
    env.update({"SOPS_AGE_KEY": dan, "PYTHONPATH": str(ROOT), "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"})
    readers = {"admin_dan": recipient_for_identity(dan), "alice": recipient_for_identity(alice)}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "ops"
        start = time.perf_counter()
        build(repo, args.files, args.versions, env, readers)
        print(f"built {args.versions} versions of {args.files} files in {time.perf_counter() - start:.1f} s", file=sys.stderr)

        start = time.perf_counter()
        out = sh([sys.executable, "-m", "opssecrets", "--repo", str(repo), "exposure", "--json"], repo, env)
        ours = time.perf_counter() - start
        report = json.loads(out)
        assert any(e["reader"] == "alice" for e in report["exposures"]), "the audit missed alice"

        start = time.perf_counter()
        decrypts = naive(repo, env)
        theirs = time.perf_counter() - start

        print("| history | opssecrets exposure | naive loop (sops decrypt per file per commit) | ratio (loop / opssecrets) |")
        print("|---|---:|---:|---:|")
        print(
            f"| {args.versions} versions, {args.files} files ({decrypts} decrypts in the loop) "
            f"| {ours:.2f} s | {theirs:.2f} s | {theirs / ours:.1f}x |"
        )
        if args.gitleaks:
            start = time.perf_counter()
            proc = subprocess.run(
                [args.gitleaks, "git", "--no-banner", "--redact", "--exit-code", "0", str(repo)],
                capture_output=True, check=False,
            )  # fmt: skip
            leaks = time.perf_counter() - start
            if proc.returncode != 0:
                sys.exit(f"gitleaks failed: {proc.stderr.decode()[-500:]}")
            print()
            print("| same history | opssecrets exposure | gitleaks git | ratio (gitleaks / opssecrets) |")
            print("|---|---:|---:|---:|")
            print(f"| {args.versions} versions | {ours:.2f} s | {leaks:.2f} s | {leaks / ours:.2f}x |")


if __name__ == "__main__":
    main()
