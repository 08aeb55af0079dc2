"""README's rest-mode table, row by row, with the real pypsrp client through exo-authproxy's
listener (TLS + Basic auth), driven by tests/it/rest_table.rs.

Environment: PROXY_HOST, PROXY_PORT, PROXY_USER, PROXY_PASSWORD, PROXY_CA (the listener
certificate to trust), optional PROXY_QUERY, and SCENARIO (one of the scenario_* functions).
Prints one JSON object on stdout; any exception as {"exception": ...} with exit code 1.
Object properties are reported with their Python type (pypsrp's deserialized type), so the
Rust side can assert that GUIDs arrive as GUIDs and booleans as booleans. pypsrp keeps a <DT>'s
text as a str, so DateTime typing is asserted with the Windows-form client instead.
"""

import json
import os
import sys
import traceback

from pypsrp.complex_objects import GenericComplexObject
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan


def connect(**kw):
    query = os.environ.get("PROXY_QUERY", "")
    return WSMan(
        os.environ["PROXY_HOST"],
        port=int(os.environ["PROXY_PORT"]),
        path="powershell-liveid" + (("?" + query) if query else ""),
        ssl=True,
        auth="basic",
        username=os.environ["PROXY_USER"],
        password=os.environ["PROXY_PASSWORD"],
        cert_validation=os.environ["PROXY_CA"],
        operation_timeout=kw.get("operation_timeout", 20),
        read_timeout=kw.get("read_timeout", 60),
        max_envelope_size=512000,
    )


def pool():
    return RunspacePool(connect(), configuration_name="Microsoft.Exchange")


from common import conv as _conv


def conv(o, depth=0):
    return _conv(o, depth, py_types=True)


def records(ps):
    return {
        "had_errors": ps.had_errors,
        "state": int(ps.state),
        "errors": [
            {
                "fq_error": getattr(e, "fq_error", None),
                "message": str(e),
                "category": getattr(e, "category", None),
                "reason": getattr(e, "reason", None),
                "target_name": getattr(e, "target_name", None),
            }
            for e in ps.streams.error
        ],
        "warnings": [str(w) for w in ps.streams.warning],
    }


def run(p, cmds, input=None, keep=3):
    """cmds: [(name, {param: value}, [args])...] piped into each other. A parameter whose
    value is None is sent without a value (a switch)."""
    ps = PowerShell(p)
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
    r = {
        "count": len(output),
        "output": [conv(o) for o in output[:keep]],
        "names": [
            o.adapted_properties.get("Name") if isinstance(o, GenericComplexObject) else conv(o)
            for o in output
        ],
    }
    r.update(records(ps))
    return r


def get(p, identity):
    return run(p, [("Get-Mailbox", {"Identity": identity}, [])])["output"][0]["adapted"]


def scenario_reads():
    r = {}
    with pool() as p:
        r["mailbox"] = run(p, [("Get-Mailbox", {"Identity": "AdeleV"}, [])])
        r["recipients"] = run(p, [("Get-Recipient", {"ResultSize": 5}, [])], keep=5)
        r["org"] = run(p, [("Get-OrganizationConfig", {}, [])])
        r["domains"] = run(p, [("Get-AcceptedDomain", {}, [])], keep=5)
        r["stats"] = run(p, [("Get-MailboxStatistics", {"Identity": "LeeG"}, [])])
        r["positional"] = run(p, [("Get-Mailbox", {}, ["DiegoS"])])
        meta = p.get_command_metadata("Get-Mailbox*")
        r["metadata"] = [
            {"name": m.name, "parameters": sorted((m.parameters or {}).keys())} for m in meta
        ]
    return r


def scenario_set():
    r = {}
    with pool() as p:
        r["set"] = run(p, [("Set-Mailbox", {"Identity": "AlexW", "CustomAttribute1": "via-table"}, [])])
        r["after_set"] = get(p, "AlexW")
        r["whatif"] = run(p, [("Set-Mailbox", {"Identity": "AlexW", "CustomAttribute1": "what-if", "WhatIf": None}, [])])
        r["after_whatif"] = get(p, "AlexW")
        r["confirm_false"] = run(
            p, [("Set-Mailbox", {"Identity": "AlexW", "CustomAttribute4": "confirmed", "Confirm": False}, [])]
        )
        r["after_confirm"] = get(p, "AlexW")
        r["force"] = run(p, [("Set-Mailbox", {"Identity": "GradyA", "CustomAttribute5": "forced", "Force": None}, [])])
        r["after_force"] = get(p, "GradyA")
        r["no_change"] = run(p, [("Set-Mailbox", {"Identity": "AlexW", "CustomAttribute1": "via-table"}, [])])
    return r


def scenario_values():
    r = {}
    with pool() as p:
        r["hashtable"] = run(p, [(
            "Set-Mailbox",
            {
                "Identity": "DiegoS",
                "EmailAddresses": {"Add": "smtp:diego2@contoso.com", "Remove": "smtp:DiegoS@contoso.onmicrosoft.com"},
                "Languages": ["en-US", "fr-FR"],
                "HiddenFromAddressListsEnabled": True,
            },
            [],
        )])
        r["after_hashtable"] = get(p, "DiegoS")
        r["false"] = run(p, [("Set-Mailbox", {"Identity": "DiegoS", "HiddenFromAddressListsEnabled": False}, [])])
        r["after_false"] = get(p, "DiegoS")
        # $null: pypsrp sends a value-less parameter as <Nil/> (a switch when the parameter is one).
        r["before_null"] = get(p, "JohannaL")
        r["null"] = run(p, [("Set-Mailbox", {"Identity": "JohannaL", "ForwardingSmtpAddress": None}, [])])
        r["after_null"] = get(p, "JohannaL")
    return r


def scenario_pipeline():
    r = {}
    with pool() as p:
        r["pipeline"] = run(p, [
            ("Get-Mailbox", {"ResultSize": 10}, []),
            ("Set-Mailbox", {"CustomAttribute2": "piped"}, []),
        ])
        r["check"] = run(p, [("Get-Mailbox", {"Filter": "CustomAttribute2 -eq 'piped'", "ResultSize": "Unlimited"}, [])], keep=0)
    return r


def scenario_input():
    r = {}
    with pool() as p:
        r["strings"] = run(p, [("Set-Mailbox", {"CustomAttribute3": "from-strings"}, [])], input=["MeganB", "LeeG"])
        r["strings_check"] = run(p, [("Get-Mailbox", {"Filter": "CustomAttribute3 -eq 'from-strings'"}, [])], keep=0)
        ps = PowerShell(p)
        ps.add_cmdlet("Get-Mailbox").add_parameter("Identity", "*a*")
        objects = ps.invoke()
        r["objects_sent"] = [o.adapted_properties.get("Name") for o in objects]
        r["objects"] = run(p, [("Set-Mailbox", {"CustomAttribute5": "from-objects"}, [])], input=objects)
        r["objects_check"] = run(p, [("Get-Mailbox", {"Filter": "CustomAttribute5 -eq 'from-objects'"}, [])], keep=0)
    return r


def scenario_errors():
    r = {}
    with pool() as p:
        r["continue"] = run(p, [("Set-Mailbox", {"CustomAttribute6": "continued"}, [])], input=["MeganB", "nosuchuser", "LeeG"])
        r["continue_check"] = run(p, [("Get-Mailbox", {"Filter": "CustomAttribute6 -eq 'continued'"}, [])], keep=0)
        r["stop"] = run(
            p, [("Set-Mailbox", {"CustomAttribute7": "stopped", "ErrorAction": "Stop"}, [])],
            input=["GradyA", "nosuchuser", "IsaiahL"],
        )
        r["stop_check"] = run(p, [("Get-Mailbox", {"Filter": "CustomAttribute7 -eq 'stopped'"}, [])], keep=0)
        r["get_stop"] = run(p, [("Get-Mailbox", {"Identity": "nosuchuser", "ErrorAction": "Stop"}, [])])
        r["silently"] = run(p, [("Get-Mailbox", {"Identity": "nosuchuser", "ErrorAction": "SilentlyContinue"}, [])])
        r["warning"] = run(p, [("Get-Mailbox", {"ResultSize": 2}, [])])
        r["warning_silent"] = run(p, [("Get-Mailbox", {"ResultSize": 2, "WarningAction": "SilentlyContinue"}, [])])
    return r


def scenario_refusals():
    r = {}
    with pool() as p:
        for key, script in [
            ("where", "Get-Mailbox | Where-Object { $_.Name -like 'a*' }"),
            ("assign", "$m = Get-Mailbox; $m"),
            ("foreach", "Get-Mailbox | ForEach-Object { $_.Name }"),
        ]:
            ps = PowerShell(p)
            ps.add_script(script)
            ps.invoke()
            r[key] = records(ps)
        r["exo"] = run(p, [("Get-EXOMailbox", {"ResultSize": 10}, [])])
        r["format"] = run(p, [("Get-FormatData", {"TypeName": "*"}, [])])
        r["after"] = run(p, [("Get-Mailbox", {"Identity": "AdeleV"}, [])])
    return r


def scenario_ctrlc():
    r = {}
    wsman = connect(operation_timeout=5)
    with RunspacePool(wsman, configuration_name="Microsoft.Exchange") as p:
        ps = PowerShell(p)
        ps.add_cmdlet("Get-Mailbox").add_parameter("ResultSize", "Unlimited")
        ps.begin_invoke()
        while not ps.output:
            ps.poll_invoke()
        r["before_stop"] = len(ps.output)
        ps.stop()
        r["state_after_stop"] = int(ps.state)
        r["after"] = run(p, [("Get-Mailbox", {"Identity": "AdeleV"}, [])])
    return r


def main():
    scenario = os.environ.get("SCENARIO", "reads")
    try:
        res = globals()["scenario_" + scenario]()
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"exception": repr(e), "traceback": traceback.format_exc()}))
        sys.exit(1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
