"""plugins/module_utils/sandbox/contract.py is the one home of the contract: no other file
spells one of its labels or prefixes in code. Python imports it; roles template it in with
the fortress.agents.contract filter; documentation may name the values."""

from __future__ import annotations

import re
import subprocess

from ansible_collections.fortress.agents.plugins.module_utils.sandbox import contract

from fortress_lab.common import REPO_ROOT

HOME = "plugins/module_utils/sandbox/contract.py"
ME = "tests/unit/plugins/module_utils/sandbox/test_contract.py"
VALUES = [
    contract.LABEL, contract.EGRESS_NETWORK_PREFIX, contract.EGRESS_POLICY_LABEL,
    contract.EGRESS_PROXY_LABEL, contract.EGRESS_RUNTIME_LABEL, contract.EGRESS_TENANT_LABEL,
]  # fmt: skip
# Names that merely start like the network prefix: the egress role's systemd units and the
# lab's test world, which are not egress networks.
NOT_THE_PREFIX = re.compile(r"fortress-egress-(proxy|firewall|world)")
# Documentation before the value on its line: a C(...) reference, a comment, prose.
DOC = re.compile(r"C\([^)]*$|#|^\s*(-\s+)?([A-Za-z'-]+[ ,]+){2,}")


def code_lines(value: str) -> list[str]:
    """'path:line: text' of each code line, outside the contract, that spells value."""
    listed = subprocess.run(
        ["git", "grep", "-n", "-F", value, "--", ".", ":!docs", ":!*.md", f":!{HOME}", f":!{ME}"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    ).stdout.splitlines()  # fmt: skip
    found = []
    for hit in listed:
        text = hit.split(":", 2)[2]
        cleaned = NOT_THE_PREFIX.sub("", text)
        if value in cleaned and not DOC.search(cleaned[: cleaned.index(value)]):
            found.append(hit)
    return found


def test_only_the_contract_spells_the_contract() -> None:
    assert {v: code_lines(v) for v in VALUES} == {v: [] for v in VALUES}


def test_the_check_sees_a_spelled_label_in_code() -> None:
    """Red control: the same rule flags code lines and passes prose."""
    for code in ('labels = {"io.fortress.sandbox": "1"}', "  io.fortress.egress.policy: x",
                 "    name: fortress-egress-{{ item }}"):  # fmt: skip
        value = next(v for v in VALUES if v in code)
        assert not DOC.search(code[: code.index(value)]), code
    for prose in ("    C(io.fortress.sandbox=1)); other", "# the label io.fortress.sandbox",
                  "  - Removes every sandbox whose C(io.fortress.sandbox.expires)"):  # fmt: skip
        value = next(v for v in VALUES if v in prose)
        assert DOC.search(prose[: prose.index(value)]), prose
