"""The same pypsrp script through exo-authproxy in winrm mode (the proxy forwards to the
simulated RPS runspace) and in rest mode (the proxy's bridge calls the simulated REST admin
API), driven by tests/it/compat.rs, which compares the two results case by case.

Environment: PROXY_HOST, PROXY_PORT, PROXY_USER, PROXY_PASSWORD, PROXY_CA, CASES (comma-
separated case names; all when empty). Prints one JSON object: case name -> result.
"""

import json
import os
import sys
import traceback

from pypsrp.complex_objects import GenericComplexObject
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan


from common import conv


# name -> [(cmdlet, {parameter: value (None: a switch)})...] piped into each other
CASES = {
    "mailboxes": [("Get-Mailbox", {"ResultSize": 7})],
    "one": [("Get-Mailbox", {"Identity": "DiegoS"})],
    "wildcard_identity": [("Get-Mailbox", {"Identity": "user0001*"})],
    "recipients": [("Get-Recipient", {"ResultSize": 4})],
    "org": [("Get-OrganizationConfig", {})],
    "domains": [("Get-AcceptedDomain", {})],
    "stats": [("Get-MailboxStatistics", {"Identity": "LeeG"})],
    "filter": [("Get-Mailbox", {"Filter": "CustomAttribute1 -eq 'Sales'", "ResultSize": 5})],
    "unknown": [("Get-Mailbox", {"Identity": "nosuchuser"})],
    "unknown_stop": [("Get-Mailbox", {"Identity": "nosuchuser", "ErrorAction": "Stop"})],
    "default_result_size": [("Get-Mailbox", {})],
    "no_change_warning": [("Set-Mailbox", {"Identity": "AdeleV", "CustomAttribute1": "Sales"})],
    "set_then_get": [
        ("Get-Mailbox", {"ResultSize": 2}),
        ("Set-Mailbox", {"CustomAttribute5": "compat"}),
    ],
    "select_names": [("Get-Mailbox", {"ResultSize": 3}), ("Select-Object", {"Property": ["Name", "Primary*"]})],
    "select_first": [("Get-Mailbox", {"ResultSize": "Unlimited"}), ("Select-Object", {"First": 2})],
    "select_expand": [("Get-Mailbox", {"ResultSize": 2}), ("Select-Object", {"ExpandProperty": "PrimarySmtpAddress"})],
    "select_expand_list": [("Get-Mailbox", {"Identity": "AdeleV"}), ("Select-Object", {"ExpandProperty": "EmailAddresses"})],
    "select_exclude": [("Get-Mailbox", {"ResultSize": 1}), ("Select-Object", {"ExcludeProperty": "Name"})],
    "measure": [("Get-Mailbox", {"ResultSize": "Unlimited"}), ("Measure-Object", {})],
    "unknown_command": [("Get-Frobnicator", {})],
    # Select-Object mid-pipeline runs in each mode's executor (the bridge's pipeline, the
    # simulator's runner): an independent comparison, unlike a trailing one.
    "mid_select_expand": [
        ("Get-Mailbox", {"ResultSize": 3}),
        ("Select-Object", {"ExpandProperty": "Name"}),
        ("Get-MailboxStatistics", {}),
    ],
    "mid_select_first": [
        ("Get-Mailbox", {"ResultSize": "Unlimited"}),
        ("Select-Object", {"First": 2}),
        ("Get-MailboxStatistics", {}),
    ],
    "mid_select_wildcard": [
        ("Get-Mailbox", {"ResultSize": 2}),
        ("Select-Object", {"Property": ["Name", "Identity*"]}),
        ("Get-MailboxStatistics", {}),
    ],
}


def run(pool, cmds):
    ps = PowerShell(pool)
    for name, params in cmds:
        ps.add_cmdlet(name)
        for k, v in params.items():
            if v is None:
                ps.add_parameter(k)
            else:
                ps.add_parameter(k, v)
    try:
        output = ps.invoke()
    except Exception as e:  # noqa: BLE001 - reported, compared
        return {"exception": "%s: %s" % (type(e).__name__, e)}
    errors = [
        {"message": str(e), "reason": getattr(e, "reason", None)} for e in ps.streams.error
    ]
    return {
        "state": int(ps.state),
        "count": len(output),
        "output": [conv(o) for o in output],
        "warnings": [getattr(w, "message", None) or str(w) for w in ps.streams.warning],
        "errors": errors,
    }


def main():
    wsman = WSMan(
        os.environ["PROXY_HOST"],
        port=int(os.environ["PROXY_PORT"]),
        path="powershell-liveid",
        username=os.environ["PROXY_USER"],
        password=os.environ["PROXY_PASSWORD"],
        auth="basic",
        ssl=True,
        cert_validation=os.environ["PROXY_CA"],
        operation_timeout=20,
        read_timeout=60,
    )
    wanted = [c for c in os.environ.get("CASES", "").split(",") if c] or list(CASES)
    out = {}
    with RunspacePool(wsman, configuration_name="Microsoft.Exchange") as pool:
        for name in wanted:
            out[name] = run(pool, CASES[name])
    print(json.dumps(out))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"exception": repr(e), "traceback": traceback.format_exc()}))
        sys.exit(1)
