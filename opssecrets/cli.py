"""Command-line wiring: the click group, global options, and errors mapped to exit codes.

Commands live in ``opssecrets.commands``, one module per command or family, and are
imported only when invoked, so ``opssecrets check`` (a pre-commit hook) starts without
loading ruamel.yaml, the network stack or the other commands.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path

import click

from opssecrets import __version__
from opssecrets.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Interrupted,
    OpsError,
    ToolFailed,
    environment_fault,
)
from opssecrets.paths import crash_log
from opssecrets.sops import DEFAULT_DEADLINE, set_deadline

# command name -> "module:attribute"; the order is the order of `--help`.
COMMANDS: dict[str, str] = {
    "init": "opssecrets.commands.recipients:init",
    "add-engineer": "opssecrets.commands.recipients:add_engineer",
    "remove-engineer": "opssecrets.commands.recipients:remove_engineer",
    "add-host": "opssecrets.commands.recipients:add_host",
    "remove-host": "opssecrets.commands.recipients:remove_host",
    "add-project": "opssecrets.commands.recipients:add_project",
    "grant": "opssecrets.commands.recipients:grant",
    "revoke": "opssecrets.commands.recipients:revoke",
    "recipients": "opssecrets.commands.inspect:recipients",
    "access": "opssecrets.commands.inspect:access",
    "reencrypt": "opssecrets.commands.recipients:reencrypt",
    "rotate": "opssecrets.commands.rotate:rotate",
    "verify": "opssecrets.commands.rotate:verify",
    "status": "opssecrets.commands.rotate:status",
    "exposure": "opssecrets.commands.exposure:exposure",
    "lint": "opssecrets.commands.lint:lint",
    "identity": "opssecrets.commands.identity:identity",
    "share": "opssecrets.commands.share:share",
    "doctor": "opssecrets.commands.doctor:doctor",
    "check": "opssecrets.commands.check:check",
    "diff": "opssecrets.commands.diff:diff",
    "textconv": "opssecrets.commands.diff:textconv",
    "demo": "opssecrets.commands.demo:demo",
}

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="opssecrets")
@click.option(
    "--repo",
    "repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The ops repository (default: the git top level above the working directory).",
)
@click.option(
    "--timeout",
    "timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_DEADLINE,
    envvar="OPSSECRETS_TIMEOUT",
    show_default=True,
    metavar="SECONDS",
    help="Stop the command if its sops/age calls are still running this long after it started (env OPSSECRETS_TIMEOUT); "
    "nothing is changed, exit 4.",
)
@click.pass_context
def cli(ctx: click.Context, repo: Path | None, timeout: float) -> None:
    """Run the secrets of a sops-nix ops repository: recipients, rotation, and a guard."""
    from opssecrets.repo import RepoContext

    set_deadline(timeout)
    ctx.obj = RepoContext(repo)  # the one place --repo is read; commands take it with pass_repo_context


def _log_unexpected(exc: BaseException) -> Path | None:
    """Write frames (not messages: they might hold a value) of an unexpected error to a log."""
    log = crash_log()
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        frames = traceback.extract_tb(exc.__traceback__)
        lines = [f"opssecrets {__version__}: {exc.__class__.__module__}.{exc.__class__.__qualname__}\n"]
        lines += [f'  File "{f.filename}", line {f.lineno}, in {f.name}\n' for f in frames]
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.writelines(lines)
        return log
    except OSError:
        return None


class Terminated(BaseException):
    """SIGTERM arrived (a cancelled CI job, ``timeout``): unwind so every ``finally`` cleans up."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code instead of exiting (tests call this)."""
    import signal
    import threading

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    try:
        return _main(argv)
    except Terminated:
        click.echo("opssecrets: terminated; temporary files were removed", err=True)
        return EXIT_TERMINATED
    finally:
        set_deadline(None)  # the deadline is this command's: library calls after it have none
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    try:
        result = cli.main(args=argv, prog_name="opssecrets", standalone_mode=False)
    except Interrupted as exc:
        click.echo(f"opssecrets: interrupted: {exc.message}", err=True)
        return exc.exit_code
    except OpsError as exc:
        click.echo(f"opssecrets: error: {exc.message}", err=True)
        if isinstance(exc, ToolFailed) and exc.detail and exc.detail not in exc.message:
            click.echo(f"opssecrets: sops said: {exc.detail}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        click.echo("opssecrets: interrupted; nothing was changed", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE if exc.exit_code == 2 else exc.exit_code
    except KeyboardInterrupt:
        click.echo("opssecrets: interrupted", err=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except OSError as exc:
        problem = environment_fault(exc, "writing a file", "a change that stopped half-way is finished by running it again")
        if problem is None:
            return _internal_error(exc)
        click.echo(f"opssecrets: error: {problem.message}", err=True)
        return problem.exit_code
    except Exception as exc:
        return _internal_error(exc)
    return result if isinstance(result, int) else 0


def _internal_error(exc: Exception) -> int:
    log = _log_unexpected(exc)
    where = f"; details in {log}" if log else ""
    click.echo(f"opssecrets: internal error ({exc.__class__.__name__}): this is a bug, please report it{where}", err=True)
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
