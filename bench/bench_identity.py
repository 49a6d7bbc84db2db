"""How much the identity machinery costs, and what doctor's parallel decrypts buy.

Run by hand: python bench/bench_identity.py. Prints medians; the results, with ratios, go
in docs/benchmarks.md. Keys and files are generated in a temp dir; nothing of $HOME is used.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opssecrets.keys import generate_identity, recipient_for_identity  # noqa: E402


def median_seconds(argv: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def startup(repo: Path, env: dict[str, str]) -> None:
    base = f"from pathlib import Path\nfrom opssecrets.repo import Repo\nsops = Repo(Path({str(repo)!r})).sops\n"
    lazy = [sys.executable, "-c", base]
    forced = [sys.executable, "-c", base + "dict(sops.identity_env)\n"]
    bare = [sys.executable, "-c", "pass"]
    runs = 15
    t_bare = median_seconds(bare, env, runs)
    t_lazy = median_seconds(lazy, env, runs)
    t_forced = median_seconds(forced, env, runs)
    print(f"python start-up alone:                        {t_bare * 1000:7.1f} ms")
    print(f"Repo + Sops built, no sops call (lazy):       {t_lazy * 1000:7.1f} ms")
    print(f"... plus identity resolved (keyring imported): {t_forced * 1000:7.1f} ms")
    print(f"keyring cost avoided by resolving lazily:     {(t_forced - t_lazy) * 1000:7.1f} ms ({t_forced / t_lazy:.2f}x)")


def doctor(repo: Path, files: int) -> None:
    from opssecrets.doctor import run_doctor
    from opssecrets.repo import RepoContext

    for workers in (1, 8):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            report = run_doctor(RepoContext(repo), workers=workers)
            times.append(time.perf_counter() - start)
            assert report.ok and len(report.files) == files
        print(f"doctor, {files} files, {workers} worker(s):          {statistics.median(times):7.2f} s")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        repo = Path(tmp) / "ops"
        repo.mkdir()
        identity = generate_identity()
        os.environ.update(
            {
                "HOME": str(home),
                "XDG_CONFIG_HOME": str(home / ".config"),
                "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
                "SOPS_AGE_KEY": identity,
                "PYTHONPATH": str(ROOT),
            }
        )
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        (repo / ".sops.yaml").write_text(f"creation_rules:\n  - path_regex: ^secrets/\n    age: {recipient_for_identity(identity)}\n")
        files = 40
        for i in range(files):
            path = repo / "secrets" / f"s{i}.yaml"
            path.parent.mkdir(exist_ok=True)
            path.write_text(f"token: value-{i}\n")
            subprocess.run(["sops", "encrypt", "-i", str(path.relative_to(repo))], cwd=repo, check=True, capture_output=True)
        env = dict(os.environ)
        del env["SOPS_AGE_KEY"]  # nothing set: identity resolution must ask the keyring
        startup(repo, env)
        doctor(repo, files)


if __name__ == "__main__":
    main()
