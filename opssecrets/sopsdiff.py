"""What a change to encrypted files did, without showing a value (sops#16).

Per sops file: the keys added, removed and changed, and the recipients added and removed.
Key names and recipients are plaintext in a sops file; values are not, and sops gives every
value a fresh IV on each write, so different ciphertext does not mean a different value.
"Changed" is therefore decided by decrypting both sides in memory (sops decrypt reads the
ciphertext on stdin and prints the plaintext to a pipe; no plaintext file exists); a value
whose ciphertext is byte-identical on both sides is unchanged without decrypting. Without
an identity that opens a side, its values are reported as not compared.

``textconv`` renders one file for ``git diff``: recipients, then each key with a keyed
fingerprint of its value (:mod:`opssecrets.fingerprint`), never the value or a plain hash.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opssecrets.errors import OpsError
from opssecrets.secretfile import NotASopsFile, SopsMetadata, file_format, iter_leaves, metadata_from, parse_tree
from opssecrets.sops import Sops

NOT_COMPARED = "values could not be compared"


@dataclass(frozen=True)
class SopsSide:
    """One side of a diff: the file's keys (ciphertext values) and its recipients."""

    leaves: Mapping[str, Any]
    metadata: SopsMetadata
    data: bytes
    format: str

    @property
    def recipients(self) -> frozenset[str]:
        other = {f"{kind}:{ident}" for group in self.metadata.groups for kind, ident in group.other}
        return self.metadata.age_recipients | other


def read_side(rel: str, data: bytes | None) -> SopsSide | None:
    """``data`` as a sops file, or None (absent, or not a sops file)."""
    if data is None:
        return None
    try:
        tree, meta = parse_tree(Path(rel), data.decode("utf-8"))
        metadata = metadata_from(meta)
    except (NotASopsFile, UnicodeDecodeError, ValueError):
        return None
    except Exception:  # any parser's error: not a file sops wrote
        return None
    # a binary file is stored as {"data": ENC[...]}: its one key is "data", like sops-nix's
    return SopsSide(dict(iter_leaves(tree)), metadata, data, file_format(rel))


Decrypt = Callable[[SopsSide], "dict[str, Any] | str"]


def sops_decryptor(sops: Sops) -> Decrypt:
    """Decrypt a side in memory: its plaintext leaves, or why it could not be decrypted."""

    def decrypt(side: SopsSide) -> dict[str, Any] | str:
        config = sops.config if sops.config.is_file() else Path("/dev/null")
        try:
            plaintext = sops.decrypt_data(side.data, side.format, name="the file", config=config)
        except OpsError as exc:
            return exc.message
        try:
            plain = json.loads(plaintext)
        except ValueError:
            return "sops printed something that is not JSON"
        finally:
            del plaintext
        return dict(iter_leaves(plain))

    return decrypt


@dataclass
class FileDiff:
    path: str
    status: str  # added, deleted, modified, unchanged
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)
    recipients_added: list[str] = field(default_factory=list)
    recipients_removed: list[str] = field(default_factory=list)
    note: str | None = None  # why some values were not compared

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.not_compared or self.recipients_added or self.recipients_removed)

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "status": self.status,
            "keys_added": self.added,
            "keys_removed": self.removed,
            "keys_changed": self.changed,
            "keys_not_compared": self.not_compared,
            "recipients_added": self.recipients_added,
            "recipients_removed": self.recipients_removed,
            "note": self.note,
        }


def diff_sides(rel: str, before: SopsSide | None, after: SopsSide | None, decrypt: Decrypt | None) -> FileDiff:
    old_keys = dict(before.leaves) if before else {}
    new_keys = dict(after.leaves) if after else {}
    status = "added" if before is None else "deleted" if after is None else "modified"
    result = FileDiff(rel, status)
    result.added = [k for k in new_keys if k not in old_keys]
    result.removed = [k for k in old_keys if k not in new_keys]
    old_recipients = before.recipients if before else frozenset()
    new_recipients = after.recipients if after else frozenset()
    result.recipients_added = sorted(new_recipients - old_recipients)
    result.recipients_removed = sorted(old_recipients - new_recipients)
    both = [k for k in new_keys if k in old_keys]
    # identical ciphertext (same IV, same data key) is the same value: no decryption needed
    differing = [k for k in both if old_keys[k] != new_keys[k]]
    if differing and before is not None and after is not None:
        old_plain = decrypt(before) if decrypt else "no identity was offered"
        new_plain = decrypt(after) if isinstance(old_plain, dict) and decrypt else old_plain
        if isinstance(old_plain, dict) and isinstance(new_plain, dict):
            result.changed = [k for k in differing if old_plain.get(k) != new_plain.get(k)]
        else:
            result.not_compared = differing
            result.note = f"{NOT_COMPARED}: {new_plain if isinstance(new_plain, str) else old_plain}"
        del old_plain, new_plain
    if status == "modified" and result.is_empty:
        result.status = "unchanged"
    return result


def render_text(diffs: list[FileDiff], label: Callable[[str], str]) -> str:
    lines: list[str] = []
    for d in diffs:
        lines.append(f"{d.path} ({d.status})")
        lines += [f"  + key {k}" for k in d.added]
        lines += [f"  - key {k}" for k in d.removed]
        lines += [f"  ~ key {k} (value changed)" for k in d.changed]
        lines += [f"  ? key {k} (ciphertext differs; value not compared)" for k in d.not_compared]
        lines += [f"  + recipient {label(r)}" for r in d.recipients_added]
        lines += [f"  - recipient {label(r)}" for r in d.recipients_removed]
        if d.note:
            lines.append(f"  note: {d.note}")
    return "\n".join(lines) + ("\n" if lines else "")


def textconv_text(side: SopsSide, decrypt: Decrypt, key: bytes | None, label: Callable[[str], str]) -> str:
    """The file as ``git diff`` should see it: recipients, then keys with keyed fingerprints."""
    from opssecrets.fingerprint import keyed_fingerprint

    plain = decrypt(side)
    # the same header on both sides: git hands the old side over as a temporary file
    lines = ["# sops file: values shown as keyed fingerprints (opssecrets textconv), never values"]
    if isinstance(plain, str):
        lines.append(f"# {NOT_COMPARED}: {plain}")
    lines.append("recipients:")
    lines += [f"  {label(r)}" for r in sorted(side.recipients)]
    lines.append("keys:")
    for name in side.leaves:
        if not isinstance(plain, dict):
            lines.append(f"  {name}: (encrypted)")
        elif key is None:
            lines.append(f"  {name}: (no fingerprint: the local fingerprint key cannot be read or made)")
        else:
            value = plain.get(name)
            encoded = value if isinstance(value, str) else json.dumps(value)
            lines.append(f"  {name}: {keyed_fingerprint(key, encoded.encode('utf-8'))}")
    del plain
    return "\n".join(lines) + "\n"
