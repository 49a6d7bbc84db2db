"""Token rotation: find the secret, check and verify the new value, write it atomically with
sops, record it in the ledger, and say what to do next. Also ``verify``.

A value only ever lives in memory and reaches sops through stdin. The file is changed by
``transaction.apply`` like any other change (a ``sops set`` step on a 0600 ciphertext copy in
its staging folder, renamed over the original), so any failure leaves the original
byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from opssecrets import fsio, git
from opssecrets.changes import Change, run_change
from opssecrets.errors import BadInput, EnvironmentProblem, Findings, Interrupted
from opssecrets.exposure import saved_data_key_readers
from opssecrets.findsecret import FoundSecret, find_secret
from opssecrets.identity import operator_name
from opssecrets.ledger import RotationLedger, editing, format_time, now_utc
from opssecrets.paths import CONFIG_NAME, ROTATION_PENDING
from opssecrets.policy import Policy, SecretKind
from opssecrets.repo import Repo
from opssecrets.secretfile import file_age_recipients
from opssecrets.sopsconfig import recipient_names, short_name
from opssecrets.transaction import FileChange, NewValue, Plan, repo_lock
from opssecrets.verify.http import Rejected, Unreachable, VerifyResult

_AGE_RECIPIENT = re.compile(r"age1[02-9ac-hj-np-z]{58}")


# --- finding the secret --------------------------------------------------------------------


@dataclass(frozen=True)
class Target(FoundSecret):
    """A secret found by :func:`find_secret`, with its kind in the policy."""

    kind: SecretKind


def resolve_target(repo: Repo, policy: Policy, key: str, file: str | None) -> Target:
    """The file and kind for ``key`` (which file: :func:`opssecrets.findsecret.find_secret`)."""
    found = find_secret(repo, key, file, policy.platform.default_file)
    return Target(found.relpath, found.key, found.secret_file, policy.kind_for_key(found.key))


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
    known = recipient_names(repo.config_path)
    if any(r not in known for r in recipients):
        for line in git.file_history_patch(repo.root, CONFIG_NAME).splitlines():
            match = _ANCHORED_KEY.search(line)
            if line.startswith("-") and match:
                known.setdefault(match.group(2), short_name(match.group(1)))
    return [known.get(r, r[:12] + "...") for r in recipients]


# --- writing ---------------------------------------------------------------------------------


def value_plan(relpath: str, key: str, value: str, *, rotate_data_key: bool) -> Plan:
    """Setting ``key`` in ``relpath`` to ``value`` (and first replacing the data key if asked),
    as one step of a transaction: ``apply`` runs sops on a 0600 copy in its staging folder,
    reads the key back, and renames the copy over the original only if the original did not
    change meanwhile. Any failure leaves the original byte-identical; the value reaches sops
    only on stdin."""
    change = FileChange(relpath=relpath, updatekeys=False, rotate=rotate_data_key, keys=[key], set_value=NewValue(key, value))
    return Plan(before=None, after=None, files=[change])


# A rotation killed between renaming the file and saving the ledger has written the value but
# not recorded it; run again with the same value, it is "the same as the current one". This
# note (in the state folder, not committed; it holds a hash of the new ciphertext, never the
# value) lets that run recognise its own unfinished write and record it.
def _pending_path(repo: Repo) -> Path:
    return repo.state_dir / ROTATION_PENDING


def _note_pending(repo: Repo, relpath: str, key: str, reason: str | None, data_key: bool, data: bytes) -> None:
    note = {"file": relpath, "key": key, "sha256": hashlib.sha256(data).hexdigest(), "data_key_rotated": data_key, "reason": reason}
    fsio.write_atomic(_pending_path(repo), json.dumps(note).encode("utf-8"))


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


@dataclass
class _ValueChange:
    """One new value as a change for :func:`run_change`: planned under the repository lock (so
    no recipient change runs meanwhile), noted before its rename (so a run killed before the
    ledger is saved is finished by the next), recorded in the ledger."""

    repo: Repo
    target: Target
    value: str = field(repr=False)
    reason: str | None
    before: bytes | None = None  # the file as the lock found it
    reasons: list[str] = field(default_factory=list)  # why the data key is replaced too
    by: str | None = None
    when: datetime | None = None

    def change(self) -> Change:
        self.before = (self.repo.root / self.target.relpath).read_bytes()
        self.reasons = data_key_rotation_reasons(self.repo, RotationLedger.load(self.repo.root), self.target)
        plan = value_plan(self.target.relpath, self.target.key, self.value, rotate_data_key=bool(self.reasons))
        return Change(plan, record=self._record, before_replace=self._note, after_record=self._forget_note)

    def _note(self, relpath: str, data: bytes) -> None:
        _note_pending(self.repo, relpath, self.target.key, self.reason, bool(self.reasons), data)

    def _record(self, ledger: RotationLedger, when: datetime) -> None:
        self.by, self.when = operator_name(self.repo.root), when
        ledger.record_rotation(self.target.relpath, self.target.key, when=when, by=self.by, reason=self.reason)

    def _forget_note(self) -> None:
        _pending_path(self.repo).unlink(missing_ok=True)

    def wrote_the_file(self) -> bool:
        return self.before is not None and (self.repo.root / self.target.relpath).read_bytes() != self.before


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
    rotation = _ValueChange(repo, target, value, reason)
    try:
        run_change(repo, rotation.change)
    except (KeyboardInterrupt, Interrupted):
        if not rotation.wrote_the_file():
            raise  # nothing was written: the CLI (or apply's message) says so
        raise Interrupted(
            f"the new value of {target.key} is already in {target.relpath}, but the ledger may not have recorded it; "
            "run the same command again with the same value to record it"
        ) from None
    assert rotation.when is not None
    steps = kind.runbook_steps(file=target.relpath, key=target.key, deploy=policy.platform.deploy)
    return RotationOutcome(target, verified, skipped, rotation.reasons, rotation.by, rotation.when, steps)


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
                ledger.record_data_key_rotation(
                    target.relpath, when, readers=file_age_recipients(repo.root / target.relpath), head=git.head_commit(repo.root)
                )
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
