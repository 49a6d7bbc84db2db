"""add-engineer on 100 and 1000 secret files, against the loop the sops-nix README implies.

The alternative a team has today: edit .sops.yaml by hand, then run
`sops updatekeys -y FILE` once per file. Both sides start from identical copies of the
same repository and end with the same recipients; the ratio is loop time / opssecrets time.

Run by hand:  .venv/bin/python bench/bench_add_engineer.py [--sizes 100 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from opssecrets.keys import generate_identity, recipient_for_identity

ROOT = Path(__file__).resolve().parents[1]


def sh(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{args[0]} failed: {proc.stderr.decode()[-500:]}")


def build(base: Path, files: int, env: dict[str, str], admin: str, host: str) -> None:
    (base / "secrets").mkdir(parents=True)
    (base / ".sops.yaml").write_text(
        f"keys:\n  - &admin_dan {admin}\n  - &host_clarun {host}\ncreation_rules:\n"
        "  - path_regex: ^secrets/\n    key_groups:\n      - age:\n          - *admin_dan\n          - *host_clarun\n"
    )
    sample = base / "secrets" / "s0000.yaml"
    sample.write_text("matrix-registration-token: abc\nslack-bot-token: def\nacme-email: a@b.c\n")
    sh(["sops", "--disable-version-check", "--config", ".sops.yaml", "encrypt", "-i", "secrets/s0000.yaml"], base, env)
    for i in range(1, files):  # copies of a sops file are valid sops files
        shutil.copyfile(sample, base / "secrets" / f"s{i:04d}.yaml")
    sh(["git", "init", "-q"], base, env)


def run_opssecrets(repo: Path, env: dict[str, str], newcomer: str) -> float:
    start = time.perf_counter()
    sh([sys.executable, "-m", "opssecrets", "--repo", str(repo), "add-engineer", "eve", "--age-key", newcomer, "--admin"], repo, env)
    return time.perf_counter() - start


def run_loop(repo: Path, env: dict[str, str], newcomer: str) -> float:
    start = time.perf_counter()
    config = repo / ".sops.yaml"
    text = config.read_text().replace("  - &host_clarun", f"  - &admin_eve {newcomer}\n  - &host_clarun")
    config.write_text(text.replace("          - *host_clarun\n", "          - *host_clarun\n          - *admin_eve\n"))
    for path in sorted((repo / "secrets").glob("*.yaml")):
        sh(["sops", "--disable-version-check", "updatekeys", "-y", str(path.relative_to(repo))], repo, env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    args = parser.parse_args()
    identity = generate_identity()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
    env["SOPS_AGE_KEY"] = identity
    env["PYTHONPATH"] = str(ROOT)
    admin = recipient_for_identity(identity)
    host, newcomer = (recipient_for_identity(generate_identity()) for _ in range(2))
    print("| files | opssecrets add-engineer | sops updatekeys loop | ratio (loop / opssecrets) |")
    print("|---:|---:|---:|---:|")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp) / "base"
            build(base, size, env, admin, host)
            ours, loop = Path(tmp) / "ours", Path(tmp) / "loop"
            shutil.copytree(base, ours)
            shutil.copytree(base, loop)
            t_ours = run_opssecrets(ours, env, newcomer)
            t_loop = run_loop(loop, env, newcomer)
            print(f"| {size} | {t_ours:.2f} s | {t_loop:.2f} s | {t_loop / t_ours:.1f}x |")


if __name__ == "__main__":
    main()
