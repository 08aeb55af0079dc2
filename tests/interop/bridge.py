"""pypsrp against the REST bridge (rest mode) or the simulated RPS runspace (winrm mode's far
end), driven by tests/it/bridge.rs. Same script for both, so the Rust side can compare.

Environment: EXO_HOST, EXO_PORT, EXO_CA (PEM path), SCENARIO, MAILBOXES.
Prints one JSON object on stdout; any exception as {"exception": ...} with exit code 1.
"""

import json
import os
import sys
import traceback

from pypsrp.complex_objects import GenericComplexObject
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan


def connect(**kw):
    return WSMan(
        os.environ["EXO_HOST"],
        port=int(os.environ["EXO_PORT"]),
        path="powershell-liveid",
        ssl=True,
        auth="basic",
        username="reporting",
        password="sandbox",
        cert_validation=os.environ["EXO_CA"],
        operation_timeout=kw.get("operation_timeout", 20),
        read_timeout=kw.get("read_timeout", 60),
    )


from common import conv


def run(pool, cmds, input=None, keep=3):
    """cmds: [(name, {param: value}, [args])...] piped into each other."""
    ps = PowerShell(pool)
    for name, params, args in cmds:
        ps.add_cmdlet(name)
        for k, v in (params or {}).items():
            if v is None:
                ps.add_parameter(k)
            else:
                ps.add_parameter(k, v)
        for a in args or []:
            ps.add_argument(a)
    output = ps.invoke(input=input)
    return {
        "count": len(output),
        "output": [conv(o) for o in output[:keep]],
        "last": conv(output[-1]) if output else None,
        "had_errors": ps.had_errors,
        "state": int(ps.state),
        "errors": [
            {
                "fq_error": getattr(e, "fq_error", None),
                "message": str(e),
                "category": getattr(e, "category", None),
                "reason": getattr(e, "reason", None),
            }
            for e in ps.streams.error
        ],
        "warnings": [str(w) for w in ps.streams.warning],
    }


def scenario_issue6():
    r = {}
    with RunspacePool(connect(), configuration_name="Microsoft.Exchange") as pool:
        r["one"] = run(pool, [("Get-Mailbox", {"Identity": "AdeleV"}, [])])
        r["zero"] = run(pool, [("Get-Mailbox", {"Filter": "CustomAttribute1 -eq 'nobody'"}, [])])
        r["all"] = run(pool, [("Get-Mailbox", {"ResultSize": "Unlimited"}, [])], keep=0)
        r["unknown"] = run(pool, [("Get-Mailbox", {"Identity": "nosuchuser"}, [])])
        r["stop"] = run(pool, [("Get-Mailbox", {"Identity": "nosuchuser", "ErrorAction": "Stop"}, [])])
        r["set"] = run(pool, [("Set-Mailbox", {"Identity": "AlexW", "CustomAttribute1": "via-pypsrp"}, [])])
        r["after_set"] = run(pool, [("Get-Mailbox", {}, ["AlexW"])])
        r["no_change"] = run(pool, [("Set-Mailbox", {"Identity": "AlexW", "CustomAttribute1": "via-pypsrp"}, [])])
        r["types"] = run(pool, [(
            "Set-Mailbox",
            {
                "Identity": "DiegoS",
                "Force": None,
                "Languages": ["en-US", "fr-FR"],
                "EmailAddresses": {"Add": "smtp:diego2@contoso.com"},
                "HiddenFromAddressListsEnabled": True,
            },
            [],
        )])
        r["pipeline"] = run(pool, [
            ("Get-Mailbox", {"ResultSize": 10}, []),
            ("Set-Mailbox", {"CustomAttribute2": "piped"}, []),
        ])
        r["piped_check"] = run(pool, [("Get-Mailbox", {"Filter": "CustomAttribute2 -eq 'piped'", "ResultSize": "Unlimited"}, [])], keep=0)
        r["input"] = run(pool, [("Set-Mailbox", {"CustomAttribute3": "from-input"}, [])], input=["MeganB", "LeeG", "nosuchuser"])
        r["input_check"] = run(pool, [("Get-Mailbox", {"Filter": "CustomAttribute3 -eq 'from-input'"}, [])], keep=0)
        r["throttled"] = run(pool, [("Get-Mailbox", {"Identity": "GradyA"}, [])])
        meta = pool.get_command_metadata("Get-Mailbox*")
        r["metadata"] = [
            {"name": m.name, "parameters": sorted((m.parameters or {}).keys())} for m in meta
        ]
        ps = PowerShell(pool)
        ps.add_script("Get-Mailbox | Where-Object { $_.Name -like 'a*' }")
        ps.invoke()
        r["script"] = {
            "state": int(ps.state),
            "errors": [{"fq_error": getattr(e, "fq_error", None), "message": str(e)} for e in ps.streams.error],
        }
    return r


def scenario_compat():
    r = {}
    with RunspacePool(connect(), configuration_name="Microsoft.Exchange") as pool:
        r["mailboxes"] = run(pool, [("Get-Mailbox", {"ResultSize": 20}, [])], keep=20)
        r["one"] = run(pool, [("Get-Mailbox", {}, ["DiegoS"])])
        r["recipients"] = run(pool, [("Get-Recipient", {"ResultSize": 5}, [])], keep=5)
        r["org"] = run(pool, [("Get-OrganizationConfig", {}, [])])
        r["domains"] = run(pool, [("Get-AcceptedDomain", {}, [])])
        r["stats"] = run(pool, [("Get-MailboxStatistics", {"Identity": "LeeG"}, [])])
        r["unknown"] = run(pool, [("Get-Mailbox", {"Identity": "nosuchuser"}, [])])
        r["warning"] = run(pool, [("Set-Mailbox", {"Identity": "AdeleV", "CustomAttribute1": "Sales"}, [])])
    return r


def scenario_ctrlc():
    r = {}
    with RunspacePool(connect(operation_timeout=5), configuration_name="Microsoft.Exchange") as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-Mailbox").add_parameter("ResultSize", "Unlimited")
        ps.begin_invoke()
        while not ps.output:
            ps.poll_invoke()
        r["before_stop"] = len(ps.output)
        ps.stop()
        r["state_after_stop"] = int(ps.state)
        r["after"] = run(pool, [("Get-Mailbox", {"Identity": "AdeleV"}, [])])
    return r


def main():
    scenario = os.environ.get("SCENARIO", "issue6")
    try:
        res = globals()["scenario_" + scenario]()
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"exception": repr(e), "traceback": traceback.format_exc()}))
        sys.exit(1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
