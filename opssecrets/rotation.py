"""Token rotation: find the secret, check and verify the new value, write it atomically with
sops, record it in the ledger, and say what to do next. Also ``verify`` and ``status``.

A value only ever lives in memory and reaches sops through stdin. The file is changed by
running sops on a copy in a private staging folder (ciphertext only, mode 0600) and renaming
the result over the original, so any failure leaves the original byte-identical.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from opssecrets import git
from opssecrets.errors import BadInput, EnvironmentProblem, Findings, Interrupted, ToolFailed
from opssecrets.exposure import saved_data_key_readers, saved_exposures
from opssecrets.findsecret import find_secret
from opssecrets.ledger import RotationLedger, editing, format_time, now_utc, operator_name, parse_time
from opssecrets.paths import CONFIG_NAME, PENDING_TEMP_PREFIX, ROTATE_STAGE_PREFIX, ROTATE_STAGING, ROTATION_PENDING
from opssecrets.policy import Policy, SecretKind
from opssecrets.repo import Repo
from opssecrets.secretfile import SecretFile
from opssecrets.sops import classify_sops_failure, encode_set_value, index_for_key
from opssecrets.transaction import repo_lock
from opssecrets.verify.http import Rejected, Unreachable, VerifyResult

DUE_WINDOW_DAYS = 14
STATES = ("exposed", "overdue", "due", "unknown", "ok")  # worst first
_AGE_RECIPIENT = re.compile(r"age1[02-9ac-hj-np-z]{58}")


# --- finding the secret --------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    relpath: str
    key: str
    kind: SecretKind
    secret_file: SecretFile


def resolve_target(repo: Repo, policy: Policy, key: str, file: str | None) -> Target:
    """The file and kind for ``key`` (which file: :func:`opssecrets.findsecret.find_secret`)."""
    found = find_secret(repo, key, file, policy.platform.default_file)
    return Target(found.relpath, found.key, policy.kind_for_key(found.key), found.secret_file)


# --- the new value ---------------------------------------------------------------------------


def strip_one_newline(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text


def generate_value(kind: SecretKind) -> str:
    if not kind.can_generate:
        raise BadInput(
            f"{kind.name} values come from the provider, not from here: --generate is not possible; "
            "paste it at the prompt or pipe it with --stdin"
        )
    return secrets.token_urlsafe(kind.generate_bytes)


def check_value(policy: Policy, kind: SecretKind, key: str, value: str) -> None:
    """Refuse an empty value or one outside the kind's format, saying what it looks like instead."""
    if value == "":
        raise BadInput(f"empty value for {key}: nothing was changed")
    if value.strip() != value:
        raise BadInput(f"the value for {key} starts or ends with whitespace: copy it again without spaces; nothing was changed")
    if kind.accepts_value(value):
        return
    others = [k for k in policy.kinds_whose_format_matches(value) if k.name != kind.name]
    wanted = kind.value_hint or "the format in the policy"
    if others:
        other = others[0]
        looks = other.description or other.name
        raise BadInput(
            f"that value looks like a {other.name} ({other.value_hint or looks}), but {key} is a {kind.name} "
            f"and needs {wanted}; nothing was changed"
        )
    raise BadInput(f"the value for {key} is not {wanted} (kind {kind.name}); nothing was changed")


# --- verification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyOptions:
    slack_api_url: str | None = None
    homeserver: str | None = None
    timeout: float = 15.0
    # told "sending KIND to https://host" before the value leaves (the command prints it)
    announce: Callable[[str], None] | None = None


def _announce(options: VerifyOptions, kind: SecretKind, url: str, what: str) -> None:
    from opssecrets.verify.http import origin, require_https

    require_https(url, what)
    if options.announce is not None:
        options.announce(f"sending the {kind.name} value to {origin(url)} to verify it")


def run_verifier(kind: SecretKind, value: str, options: VerifyOptions) -> VerifyResult:
    """Ask the service about ``value``; raises ``Rejected`` or ``Unreachable``, and BadInput
    (before connecting) for a URL that is not https (plain http only to this machine)."""
    if kind.verify in ("slack-auth-test", "slack-apps-connections-open"):
        from opssecrets.verify.slack import SlackClient

        client = SlackClient(options.slack_api_url, options.timeout)
        _announce(options, kind, client.base_url, "the Slack API URL")
        if kind.verify == "slack-auth-test":
            return client.auth_test(value, kind.expected_team)
        return client.apps_connections_open(value)
    if kind.verify == "matrix-registration-token":
        from opssecrets.verify.matrix import MatrixClient, homeserver_url

        url = homeserver_url(options.homeserver, kind.homeserver)
        _announce(options, kind, url, "the homeserver")
        return MatrixClient(url, options.timeout).registration_token_valid(value)
    raise BadInput(f'kind {kind.name} has no verification in the policy (verify = "none")')


def verify_new_value(kind: SecretKind, value: str, options: VerifyOptions) -> VerifyResult:
    try:
        return run_verifier(kind, value, options)
    except Rejected as exc:
        raise BadInput(
            f"{exc.message}; the value was not written. Check you copied the right token ({kind.value_hint or kind.name})"
        ) from None
    except Unreachable as exc:
        raise EnvironmentProblem(
            f"{exc.message}; nothing was changed. Retry when it is reachable, or pass --no-verify to write the value unverified"
        ) from None


# --- the data key ----------------------------------------------------------------------------


def data_key_rotation_reasons(repo: Repo, ledger: RotationLedger, target: Target) -> list[str]:
    """Why the file's data key must be replaced before a new value goes in (empty: it need not).

    A reader removed since the data key was last rotated still holds a wrapped copy of it (in
    git history), so a value set under the same data key would be readable to them. Two
    sources: exposures recorded in the ledger, and age recipients that appear in the file's
    git history (since the recorded data-key rotation) but are no longer on the file.
    """
    reasons: list[str] = []
    record = ledger.files.get(target.relpath)
    if record is not None:
        readers = sorted({exposure.reader for _, exposure in record.exposures_since_data_key_rotation()})
        if readers:
            reasons.append("exposed to " + ", ".join(readers))
    current = target.secret_file.metadata.age_recipients
    recorded_head = record.data_key_head if record is not None and record.data_key_rotated_at is not None else None
    if not git.history_complete_since(repo.root, recorded_head):
        # the history that would show a removed reader is not in this clone: the safe side
        reasons.append(
            "this is a shallow clone, so git history cannot show who was removed since the last data-key rotation "
            "(run 'git fetch --unshallow' to decide from the full history)"
        )
    if record is not None and record.data_key_rotated_at is not None and record.data_key_readers is not None:
        # Who could ever hold the current data key: its readers when it was made, and anyone
        # added to the file since (a later removal of them counts).
        patch = git.file_history_patch(
            repo.root, target.relpath, since=format_time(record.data_key_rotated_at), after_commit=record.data_key_head
        )
        added = _recipients_in(patch, "+")
        removed = (set(record.data_key_readers) | added) - current
    else:
        # No recorded data-key rotation: anyone ever removed from the file may hold this one.
        patch = git.file_history_patch(repo.root, target.relpath)
        removed = _recipients_in(patch, "-") - current
    if removed:
        names = _names_for(repo, sorted(removed))
        reasons.append("recipient removed since the last data-key rotation: " + ", ".join(names))
    # a data key shared with another file's history (a copied file) shows only in the audit
    audited = saved_data_key_readers(repo, target.relpath, target.secret_file.tree, target.secret_file.path)
    if audited:
        reasons.append("the exposure audit found its data key held by " + ", ".join(audited))
    return reasons


def _recipients_in(patch: str, sign: str) -> set[str]:
    """age recipients on the added (``+``) or removed (``-``) lines of a patch."""
    return {
        match
        for line in patch.splitlines()
        if line.startswith(sign) and not line.startswith(sign * 3)
        for match in _AGE_RECIPIENT.findall(line)
    }


_ANCHORED_KEY = re.compile(r"&([A-Za-z0-9_-]+)\s+[\"']?(age1[02-9ac-hj-np-z]{58})")


def _names_for(repo: Repo, recipients: Sequence[str]) -> list[str]:
    """Names for recipients: from ``.sops.yaml`` now, else from its git history (a removed
    reader's anchor is gone from the current file), else a shortened key."""
    from opssecrets.ledger import recipient_names
    from opssecrets.sopsconfig import short_name

    known = recipient_names(repo.config_path)
    if any(r not in known for r in recipients):
        for line in git.file_history_patch(repo.root, CONFIG_NAME).splitlines():
            match = _ANCHORED_KEY.search(line)
            if line.startswith("-") and match:
                known.setdefault(match.group(2), short_name(match.group(1)))
    return [known.get(r, r[:12] + "...") for r in recipients]


# --- writing ---------------------------------------------------------------------------------


def _staging_dir(repo: Repo) -> Path:
    """A fresh private folder for the copy sops works on. Called under the repository lock,
    so any older ``rotate-*`` folder is left by a killed run (ciphertext only): removed."""
    base = repo.state_dir / ROTATE_STAGING
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(base, 0o700)
    for stale in base.glob(f"{ROTATE_STAGE_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=ROTATE_STAGE_PREFIX, dir=base))


def write_value(
    repo: Repo,
    relpath: str,
    key: str,
    value: str,
    *,
    rotate_data_key: bool,
    before_replace: Callable[[bytes], None] | None = None,
) -> None:
    """Set ``key`` in ``relpath`` to ``value`` (and first replace the data key if asked).

    sops works on a 0600 copy in a private staging folder; the result is checked by
    decrypting the key back, then renamed over the original (the staging folder is on the
    repository's filesystem, as the transaction's is, so nothing is ever written next to the
    original). Any failure leaves the original byte-identical. The value reaches sops only on
    stdin. ``before_replace`` sees the new file's bytes just before the rename.
    """
    original = repo.root / relpath
    before = original.read_bytes()
    mode = original.stat().st_mode & 0o777
    staging = _staging_dir(repo)
    try:
        staged = staging / original.name
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(before)
        if rotate_data_key:
            repo.sops.rotate(staged.name, cwd=staging, name=relpath)
        payload = encode_set_value(value)
        secret_bytes = [value.encode("utf-8"), payload]
        proc = repo.sops.call(
            ("set", "--value-stdin", staged.name, index_for_key(key)), cwd=staging, stdin=payload, redact=secret_bytes, name=relpath
        )
        if proc.returncode != 0:
            raise classify_sops_failure(proc, "set", relpath)
        check = repo.sops.call(
            ("decrypt", "--extract", index_for_key(key), staged.name), cwd=staging, redact=secret_bytes, name=relpath
        )
        if check.returncode != 0:
            raise classify_sops_failure(check, "decrypt", relpath)
        if not secrets.compare_digest(check.stdout, value.encode("utf-8")):
            raise ToolFailed(f"sops set {relpath}: reading {key} back did not give the new value; nothing was changed")
        if original.read_bytes() != before:
            raise BadInput(f"{relpath} changed while the rotation ran; nothing was written, run it again")
        os.chmod(staged, mode)
        fd = os.open(staged, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if before_replace is not None:
            before_replace(staged.read_bytes())
        os.replace(staged, original)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# A rotation killed between renaming the file and saving the ledger has written the value but
# not recorded it; run again with the same value, it is "the same as the current one". This
# note (in the state folder, not committed; it holds a hash of the new ciphertext, never the
# value) lets that run recognise its own unfinished write and record it.
def _pending_path(repo: Repo) -> Path:
    return repo.state_dir / ROTATION_PENDING


def _note_pending(repo: Repo, relpath: str, key: str, reason: str | None, data_key: bool, data: bytes) -> None:
    note = {"file": relpath, "key": key, "sha256": hashlib.sha256(data).hexdigest(), "data_key_rotated": data_key, "reason": reason}
    path = _pending_path(repo)
    fd, tmp = tempfile.mkstemp(prefix=PENDING_TEMP_PREFIX, dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(note, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _unfinished(repo: Repo, target: Target) -> dict[str, object] | None:
    """The pending note of a killed rotation of ``target`` whose write is what the file holds."""
    try:
        note = json.loads(_pending_path(repo).read_text(encoding="utf-8"))
        current = (repo.root / target.relpath).read_bytes()
    except (OSError, ValueError):
        return None
    if not isinstance(note, dict) or note.get("file") != target.relpath or note.get("key") != target.key:
        return None
    return note if note.get("sha256") == hashlib.sha256(current).hexdigest() else None


def current_value(repo: Repo, target: Target) -> bytes:
    """The value now in the file (decrypting with the operator's identity); never shown."""
    return repo.sops.extract(target.relpath, target.key)


# --- the whole rotation ------------------------------------------------------------------------


@dataclass(frozen=True)
class RotationOutcome:
    target: Target
    verified: VerifyResult | None
    verify_skipped: str | None
    data_key_reasons: list[str]
    by: str | None
    when: datetime
    steps: list[str] = field(default_factory=list)


def rotate_secret(
    repo: Repo,
    policy: Policy,
    target: Target,
    value: str,
    *,
    reason: str | None,
    verify: bool,
    options: VerifyOptions,
    old_value: bytes | None = None,
) -> RotationOutcome:
    """Check, verify, write and record one new value. Nothing changes unless every check passes."""
    kind = target.kind
    check_value(policy, kind, target.key, value)
    if old_value is not None and secrets.compare_digest(old_value, value.encode("utf-8")):
        finished = _finish_unfinished(repo, policy, target)
        if finished is not None:
            return finished
        raise BadInput(f"the new value for {target.key} is the same as the current one: nothing to rotate; nothing was changed")
    verified: VerifyResult | None = None
    skipped: str | None = None
    if kind.verify == "none":
        skipped = "no verification for this kind"
    elif kind.verify_after_deploy:
        skipped = "verify after the deploy (see the steps)"
    elif not verify:
        skipped = "--no-verify"
    else:
        verified = verify_new_value(kind, value, options)
    # The repository lock keeps recipient changes (remove-engineer, ...) from running at the
    # same time; the ledger's own lock is taken inside it, never the other way round.
    with repo_lock(repo):
        before = (repo.root / target.relpath).read_bytes()
        try:
            with editing(repo.root) as ledger:
                reasons = data_key_rotation_reasons(repo, ledger, target)

                def note(data: bytes) -> None:
                    _note_pending(repo, target.relpath, target.key, reason, bool(reasons), data)

                write_value(repo, target.relpath, target.key, value, rotate_data_key=bool(reasons), before_replace=note)
                when = now_utc()
                by = operator_name(repo.root)
                ledger.record_rotation(target.relpath, target.key, when=when, by=by, reason=reason)
                if reasons:
                    ledger.record_data_key_rotation(target.relpath, when)
        except KeyboardInterrupt:
            if (repo.root / target.relpath).read_bytes() == before:
                raise  # nothing was written: the CLI says so
            raise Interrupted(
                f"the new value of {target.key} is already in {target.relpath}, but the ledger may not have recorded it; "
                "run the same command again with the same value to record it"
            ) from None
        _pending_path(repo).unlink(missing_ok=True)
    steps = kind.runbook_steps(file=target.relpath, key=target.key, deploy=policy.platform.deploy)
    return RotationOutcome(target, verified, skipped, reasons, by, when, steps)


def _finish_unfinished(repo: Repo, policy: Policy, target: Target) -> RotationOutcome | None:
    """Record a rotation a killed run wrote but did not record (see ``_pending_path``)."""
    with repo_lock(repo):
        note = _unfinished(repo, target)
        if note is None:
            return None
        reason = note.get("reason")
        with editing(repo.root) as ledger:
            when = now_utc()
            by = operator_name(repo.root)
            ledger.record_rotation(target.relpath, target.key, when=when, by=by, reason=reason if isinstance(reason, str) else None)
            if note.get("data_key_rotated"):
                ledger.record_data_key_rotation(target.relpath, when)
        _pending_path(repo).unlink(missing_ok=True)
    steps = target.kind.runbook_steps(file=target.relpath, key=target.key, deploy=policy.platform.deploy)
    reasons = ["by the interrupted run"] if note.get("data_key_rotated") else []
    return RotationOutcome(target, None, "an interrupted run had written this value; recorded it now", reasons, by, when, steps)


def verify_current(repo: Repo, target: Target, options: VerifyOptions) -> VerifyResult:
    """Check the value now in the file against its service; ``Findings`` if refused."""
    if target.kind.verify == "none":
        raise BadInput(f"{target.key} is a {target.kind.name}, which has no verification in the policy")
    value = current_value(repo, target).decode("utf-8", "replace")
    try:
        return run_verifier(target.kind, value, options)
    except Rejected as exc:
        raise Findings(f"{target.key} in {target.relpath}: {exc.message}") from None
    except Unreachable as exc:
        raise EnvironmentProblem(f"{exc.message}; could not verify {target.key}, retry when it is reachable") from None


# --- status ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusRow:
    file: str
    key: str
    kind: str
    rotated_at: str | None
    age_days: int | None
    max_age_days: int | None
    state: str
    note: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "key": self.key,
            "kind": self.kind,
            "rotated_at": self.rotated_at,
            "age_days": self.age_days,
            "max_age_days": self.max_age_days,
            "state": self.state,
        }


def _state(age_days: int | None, max_age_days: int | None) -> str:
    if max_age_days is None or age_days is None:
        return "ok"
    if age_days > max_age_days:
        return "overdue"
    if age_days >= max_age_days - DUE_WINDOW_DAYS:
        return "due"
    return "ok"


def status_rows(repo: Repo, policy: Policy, ledger: RotationLedger, now: datetime | None = None) -> list[StatusRow]:
    """One row per key of every encrypted file, worst first. Reads metadata only, no sops."""
    now = now or now_utc()
    rows: list[StatusRow] = []
    for secret_file in repo.secret_files():
        relpath = repo.relpath(secret_file.path)
        lastmodified: datetime | None = None
        if secret_file.metadata.lastmodified:
            with contextlib.suppress(ValueError):
                lastmodified = parse_time(secret_file.metadata.lastmodified)
        # findings of the last `opssecrets exposure`, kept until the value (or data key) changes
        from_history = saved_exposures(repo, relpath, secret_file.tree, secret_file.path)
        for key in secret_file.key_paths():
            kind = policy.kind_for_key(key)
            record = ledger.get(relpath, key)
            rotated = record.rotated_at if record else None
            if rotated is not None:
                age: int | None = max(0, (now - rotated).days)
                state = _state(age, kind.max_age_days)
                note = f"by {record.by}" if record and record.by else ""
            else:
                age = max(0, (now - lastmodified).days) if lastmodified else None
                state = "unknown"
                note = (
                    "never rotated through opssecrets; age from the file's sops lastmodified"
                    if lastmodified
                    else "no lastmodified"
                )
            if record is not None and record.exposed:
                state = "exposed"
                note = "exposed to " + ", ".join(f"{e.reader} since {format_time(e.since)[:10]}" for e in record.exposed_to)
            if key in from_history:
                state = "exposed"
                earlier = [note] if record is not None and record.exposed else []
                note = "; ".join([*earlier, "history: " + ", ".join(from_history[key])])
            rows.append(
                StatusRow(relpath, key, kind.name, format_time(rotated) if rotated else None, age, kind.max_age_days, state, note)
            )
    rows.sort(key=_severity)
    return rows


def _severity(row: StatusRow) -> tuple[int, int, str, str]:
    overdue_by = (row.age_days or 0) - (row.max_age_days or 0) if row.max_age_days else -(10**6)
    return (STATES.index(row.state), -overdue_by, row.file, row.key)
