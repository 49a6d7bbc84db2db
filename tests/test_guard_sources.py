"""Where files come from: paths, the index (--staged), every tracked file (--all); bad input."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import guard_support as tok
from conftest import PROJECT_ROOT, OpsRepo
from guard_support import findings


def test_staged_reads_the_index_not_the_working_tree(repo: OpsRepo) -> None:
    repo.write("clean.txt", "nothing\n")
    repo.git("add", "clean.txt")
    repo.git("commit", "-qm", "init")
    repo.write("app.env", f"SLACK={tok.slack_bot()}\n")
    repo.git("add", "app.env")
    repo.write("app.env", "SLACK=fixed-but-not-restaged\n")  # fixed in the tree only
    repo.write("untracked.txt", tok.slack_bot() + "\n")  # not staged: not checked
    found = findings(repo, "--staged")
    assert [(f["path"], f["line"], f["rule"]) for f in found] == [("app.env", 1, "slack-bot-token")]
    # the working tree is clean, so a path check passes
    assert findings(repo, "app.env") == []
    repo.git("add", "app.env")
    assert findings(repo, "--staged") == []


def test_staged_deleted_symlink_and_pathspec(repo: OpsRepo) -> None:
    repo.write("gone.txt", "x\n")
    repo.write("keep.txt", "x\n")
    repo.git("add", ".")
    repo.git("commit", "-qm", "init")
    repo.git("rm", "-q", "--cached", "gone.txt")
    os.symlink("/etc/passwd", repo.root / "link")
    repo.write("sub/a.txt", tok.github_classic() + "\n")
    repo.write("other/b.txt", tok.github_classic() + "\n")
    repo.git("add", "link", "sub/a.txt", "other/b.txt")
    result = repo.ops("check", "--staged")
    assert result.code == 1, result
    assert "gone.txt: deleted in the index" in result.err
    assert "link: is a symlink; not followed" in result.err
    assert [line.split(":")[0] for line in result.out.splitlines()] == ["other/b.txt", "sub/a.txt"]
    only = findings(repo, "--staged", "sub")
    assert [f["path"] for f in only] == ["sub/a.txt"]


def test_staged_on_an_unborn_branch_and_sops_yaml_from_the_index(repo: OpsRepo) -> None:
    repo.write(".sops.yaml", f"creation_rules:\n  - path_regex: ^secrets/\n    age: {repo.operator.recipient}\n")
    repo.write("secrets/x.yaml", "plain: text\n")
    repo.git("add", ".")
    found = findings(repo, "--staged")
    assert [(f["path"], f["rule"]) for f in found] == [("secrets/x.yaml", "sops-unencrypted")]


def test_all_checks_tracked_files_and_skips_symlinks(repo: OpsRepo) -> None:
    repo.write("a/one.txt", tok.gitlab() + "\n")
    repo.write("b/two.txt", "clean\n")
    os.symlink("one.txt", repo.root / "a" / "alias.txt")
    repo.write("untracked.txt", tok.gitlab() + "\n")
    repo.git("add", "a", "b")
    result = repo.ops("check", "--all")
    assert result.code == 1, result
    assert result.out.startswith("a/one.txt:1: gitlab-token: ")
    assert len(result.out.splitlines()) == 1
    assert "a/alias.txt: is a symlink" in result.err


def test_all_in_parallel_workers_on_a_large_tree(repo: OpsRepo) -> None:
    big = repo.root / "logs" / "big.log"
    big.parent.mkdir()
    with big.open("wb") as handle:
        line = b"2026-01-01 INFO GET /api/v1/items 200 12ms user=alice\n"
        for _ in range(30):
            handle.write(line * (1_000_000 // len(line) + 1))
        handle.write(f"oops {tok.aws_key()}\n".encode())
    repo.write("small/config.yaml", f"api_token: {tok.rand(40)}\n")
    repo.git("add", ".")
    found = findings(repo, "--all", "--jobs", "2")
    assert [(f["path"], f["rule"]) for f in found] == [("logs/big.log", "aws-access-key"), ("small/config.yaml", "generic-secret")]
    assert findings(repo, "--all", "--jobs", "1") == found


def test_bad_usage_exits_2_and_changes_nothing(repo: OpsRepo, tmp_path_factory: object) -> None:
    repo.write("a.txt", "x\n")
    before = repo.snapshot()
    outside = repo.root.parent / "outside.txt"
    outside.write_text(tok.slack_bot())
    cases = [
        (("check", "--staged", "--all"), "do not go together"),
        (("check", "--all", "a.txt"), "drop the paths"),
        (("check",), "nothing to check"),
        (("check", str(outside)), "outside the repository"),
        (("check", "../outside.txt"), "outside the repository"),
        (("check", "missing.txt"), "no such file"),
    ]
    for args, fragment in cases:
        result = repo.ops(*args)
        assert result.code == 2, (args, result)
        assert fragment in result.err, (args, result)
        assert len(result.err.strip().splitlines()) == 1, result
        assert "xoxb" not in result.err
    assert repo.snapshot() == before


def test_staged_outside_git_is_bad_usage(tmp_path: object, repo: OpsRepo) -> None:
    plain = repo.root.parent / "plain"
    plain.mkdir()
    (plain / ".sops.yaml").write_text("creation_rules: []\n")
    result = repo.ops_proc("--repo", str(plain), "check", "--staged")
    assert result.code == 2, result
    assert "--staged needs git" in result.err


def test_unreadable_file_is_a_note(repo: OpsRepo) -> None:
    if os.geteuid() == 0:
        # root reads anything: use a FIFO instead, which is not a regular file
        os.mkfifo(repo.root / "pipe")
        result = repo.ops("check", "pipe")
        assert result.code == 0, result
        assert "pipe: is not a regular file" in result.err
        return
    path = repo.write("secret.txt", "x")
    path.chmod(0)
    result = repo.ops("check", "secret.txt")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert result.code == 0, result
    assert "cannot be read" in result.err


def test_json_output_shape(repo: OpsRepo) -> None:
    repo.write(".sops.yaml", "creation_rules: [\n")
    repo.write("x.txt", "\n\n" + tok.slack_app() + "\n")
    result = repo.ops("check", "--json", "x.txt")
    assert result.code == 1
    payload = json.loads(result.out)
    assert payload["findings"][0] == {
        "path": ".sops.yaml",
        "line": 2,
        "rule": "sops-config-invalid",
        "message": payload["findings"][0]["message"],
    }
    assert payload["findings"][1]["path"] == "x.txt"
    assert payload["findings"][1]["line"] == 3
    assert payload["findings"][1]["rule"] == "slack-app-token"


def test_paths_relative_to_a_subdirectory(repo: OpsRepo) -> None:
    repo.write("deep/dir/x.txt", tok.github_classic() + "\n")
    repo.monkeypatch.chdir(repo.root / "deep")
    found = findings(repo, "dir/x.txt")
    assert [f["path"] for f in found] == ["deep/dir/x.txt"]


def test_startup_imports_stay_lean(repo: OpsRepo) -> None:
    repo.write("a.txt", "x\n")
    code = (
        "import sys\n"
        "from opssecrets.cli import main\n"
        f"rc = main(['--repo', {str(repo.root)!r}, 'check', 'a.txt'])\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=repo.root, check=True)
    modules = set(proc.stdout.split())
    assert "opssecrets.guard.engine" in modules
    heavy = {"ruamel", "ruamel.yaml", "tabulate", "http.client", "socket", "ssl", "urllib.request", "keyring", "cryptography"}
    assert not heavy & modules, heavy & modules
    # the shared options and repository context (commands/common.py) load; no other command does
    shared = {"opssecrets.commands.check", "opssecrets.commands.common"}
    other_commands = {m for m in modules if m.startswith("opssecrets.commands.") and m not in shared}
    assert not other_commands
