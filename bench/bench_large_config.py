"""Reading and editing a large real-shaped `.sops.yaml` (a cluster: many hosts, a rule each).

Measures `SopsConfig` (parse), `add-engineer --admin` (a key into every rule) and its
removal, in process, without sops: the `.sops.yaml` side of a change.

Run by hand:  .venv/bin/python bench/bench_large_config.py [--rules 160]
"""

from __future__ import annotations

import argparse
import time

from opssecrets.keys import generate_identity, recipient_for_identity
from opssecrets.recipients import add_engineer, remove
from opssecrets.sopsconfig import SopsConfig


def config_text(rules: int, admins: int = 10, hosts: int = 50) -> str:
    keys = [recipient_for_identity(generate_identity()) for _ in range(admins + hosts)]
    lines = ["keys:"]
    lines += [f"  - &admin_a{i} {keys[i]}  # admin {i}'s laptop" for i in range(admins)]
    lines += [f"  - &host_h{i} {keys[admins + i]}  # host {i}" for i in range(hosts)]
    lines.append("creation_rules:")
    for i in range(rules):
        lines += [f"  # host h{i % hosts}: rack {i}", f"  - path_regex: ^hosts/h{i}/secrets/[^/]+\\.(yaml|json|env)$"]
        readers = [*(f"*admin_a{j}" for j in range(admins)), f"*host_h{i % hosts}"]
        lines += ["    key_groups:", "      - age:", *(f"          - {ref}" for ref in readers)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rules", type=int, default=160)
    args = parser.parse_args()
    text = config_text(args.rules)
    newcomer = recipient_for_identity(generate_identity())
    start = time.perf_counter()
    config = SopsConfig(text)
    parsed = time.perf_counter()
    added = add_engineer(config, "zed", newcomer, admin=True, projects=[]).after
    edited = time.perf_counter()
    back = remove(added, "zed", role="engineer")[0].after
    removed = time.perf_counter()
    assert back.text == text
    print(f"| {len(text) // 1024} KiB, {args.rules} rules | {parsed - start:.2f} s | {edited - parsed:.2f} s | {removed - edited:.2f} s |")


if __name__ == "__main__":
    main()
