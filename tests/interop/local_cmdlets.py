"""The commands the proxy runs itself (Select-Object, Measure-Object, Get-FormatData) and
pipelines, through exo-authproxy's listener in rest mode, with the real pypsrp client.
Driven by tests/it/local_cmdlets.rs.

Environment: PROXY_HOST, PROXY_PORT, PROXY_USER, PROXY_PASSWORD, PROXY_CA, SCENARIO.
Prints one JSON object on stdout; any exception as {"exception": ...} with exit code 1.
"""

import json
import os
import sys
import traceback

from pypsrp.complex_objects import GenericComplexObject
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.serializer import TaggedValue
from pypsrp.wsman import WSMan


def connect():
    return WSMan(
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
        max_envelope_size=512000,
    )


from common import conv as _conv


def conv(o, depth=0):
    return _conv(o, depth, max_depth=8)


def run(pool, cmds, input=None):
    """cmds: [(name, [(param, value)...], [args])...] piped into each other."""
    ps = PowerShell(pool)
    for name, params, args in cmds:
        ps.add_cmdlet(name)
        for k, v in params or []:
            if v is None:
                ps.add_parameter(k)
            else:
                ps.add_parameter(k, v)
        for a in args or []:
            ps.add_argument(a)
    output = ps.invoke(input=input)
    return {
        "output": [conv(o) for o in output],
        "state": int(ps.state),
        "errors": [
            {"fq_error": getattr(e, "fq_error", None), "message": str(e)}
            for e in ps.streams.error
        ],
    }


def mailboxes(n):
    return ("Get-Mailbox", [("ResultSize", n)], [])


def scenario_table():
    r = {}
    with RunspacePool(connect(), configuration_name="Microsoft.Exchange") as pool:
        r["plain"] = run(pool, [("Get-Mailbox", [("Identity", "AdeleV")], [])])
        r["expand_scalar"] = run(pool, [mailboxes(2), ("Select-Object", [("ExpandProperty", "PrimarySmtpAddress")], [])])
        r["expand_list"] = run(pool, [("Get-Mailbox", [("Identity", "AdeleV")], []), ("Select-Object", [("ExpandProperty", "EmailAddresses")], [])])
        r["expand_missing"] = run(pool, [mailboxes(2), ("Select-Object", [("ExpandProperty", "NoSuchProperty")], [])])
        r["property_wildcard"] = run(pool, [mailboxes(2), ("Select-Object", [("Property", ["Name", "Primary*"])], [])])
        # Windows-shaped tokens (Import-PSSession proxies / Invoke-Command): `-Property:` + value.
        r["property_windows"] = run(pool, [mailboxes(2), ("Select-Object", [("-Property:", ["Name", "Primary*"])], [])])
        r["property_positional"] = run(pool, [mailboxes(1), ("Select-Object", [], ["DisplayName"])])
        r["property_missing_literal"] = run(pool, [mailboxes(1), ("Select-Object", [("Property", ["Name", "NoSuchProperty", "NoSuch*"])], [])])
        r["exclude"] = run(pool, [("Get-Mailbox", [("Identity", "AdeleV")], []), ("Select-Object", [("ExcludeProperty", "Name")], [])])
        r["exclude_with_star"] = run(pool, [("Get-Mailbox", [("Identity", "AdeleV")], []), ("Select-Object", [("Property", "*"), ("ExcludeProperty", ["*Address*", "Name"])], [])])
        r["first"] = run(pool, [mailboxes(10), ("Select-Object", [("First", 3)], [])])
        # Invoke-Command's tokens for `Select-Object -First 2`: a bare `-First`, then the value.
        r["first_windows"] = run(pool, [mailboxes(10), ("Select-Object", [("-First", None)], [2])])
        r["skip_first"] = run(pool, [mailboxes(10), ("Select-Object", [("Skip", 2), ("First", 2)], [])])
        r["last"] = run(pool, [mailboxes(10), ("Select-Object", [("Last", 2)], [])])
        r["skip_last"] = run(pool, [mailboxes(4), ("Select-Object", [("SkipLast", 3)], [])])
        r["index"] = run(pool, [mailboxes(10), ("Select-Object", [("Index", [4, 1])], [])])
        r["unique"] = run(pool, [mailboxes(10), ("Select-Object", [("Property", "RecipientTypeDetails"), ("Unique", None)], [])])
        r["mid_and_trailing"] = run(pool, [mailboxes(10), ("Select-Object", [("First", 4)], []), ("Select-Object", [("Skip", 1)], []), ("Select-Object", [("ExpandProperty", "Name")], [])])
        r["measure"] = run(pool, [mailboxes(10), ("Measure-Object", [], [])])
        r["stats"] = run(pool, [mailboxes(3), ("Get-MailboxStatistics", [], [])])
        r["measure_sum"] = run(pool, [mailboxes(3), ("Get-MailboxStatistics", [], []), ("Measure-Object", [("Property", "ItemCount"), ("Sum", None), ("Maximum", None)], [])])
        r["calculated_renamed"] = run(pool, [mailboxes(1), ("Select-Object", [("Property", ["Name", {"Name": "Mail", "Expression": "PrimarySmtpAddress"}])], [])])
        r["calculated_script"] = run(pool, [mailboxes(1), ("Select-Object", [("Property", ["Name", {"Name": "Mail", "Expression": TaggedValue("SBK", "$_.PrimarySmtpAddress")}])], [])])
        r["out_null"] = run(pool, [mailboxes(2), ("Out-Null", [], [])])
        r["format_data_count"] = run(pool, [("Get-FormatData", [("TypeName", "*"), ("PowerShellVersion", "5.1")], []), ("Measure-Object", [], [])])
        r["format_data"] = run(pool, [("Get-FormatData", [("TypeName", "*")], [])])
        r["pipeline"] = run(pool, [mailboxes(3), ("Set-Mailbox", [("CustomAttribute4", "piped-4")], [])])
        r["pipeline_check"] = run(pool, [("Get-Mailbox", [("Filter", "CustomAttribute4 -eq 'piped-4'"), ("ResultSize", "Unlimited")], []), ("Select-Object", [("ExpandProperty", "Name")], [])])
        r["input"] = run(pool, [("Set-Mailbox", [("CustomAttribute6", "from-input-6")], [])], input=["MeganB", "LeeG"])
        r["input_check"] = run(pool, [("Get-Mailbox", [("Filter", "CustomAttribute6 -eq 'from-input-6'")], []), ("Measure-Object", [], [])])
        r["input_select"] = run(pool, [("Select-Object", [("First", 2)], [])], input=["a", "b", "c"])
        r["get_command"] = run(pool, [("Get-Command", [("Name", "Get-Mailbox*")], []), ("Select-Object", [("ExpandProperty", "Name")], [])])
        r["get_command_info"] = run(pool, [("Get-Command", [], ["Get-Mailbox"])])
        r["get_command_missing"] = run(pool, [("Get-Command", [("Name", "Get-NoSuchThing")], [])])
        ps = PowerShell(pool)
        ps.add_script("Get-Mailbox | Where-Object { $_.Name -like 'a*' }")
        ps.invoke()
        r["where_script"] = {
            "state": int(ps.state),
            "errors": [{"fq_error": getattr(e, "fq_error", None)} for e in ps.streams.error],
        }
    return r


def scenario_first():
    with RunspacePool(connect(), configuration_name="Microsoft.Exchange") as pool:
        return run(pool, [("Get-Mailbox", [("ResultSize", "Unlimited")], []), ("Select-Object", [("First", 1)], [])])


def scenario_all():
    with RunspacePool(connect(), configuration_name="Microsoft.Exchange") as pool:
        return run(pool, [("Get-Mailbox", [("ResultSize", "Unlimited")], []), ("Measure-Object", [], [])])


def scenario_metadata():
    r = {}
    with RunspacePool(connect(), configuration_name="Microsoft.Exchange") as pool:
        for key, pattern in [
            ("stars_q", "**********Q"),
            ("stars_questions_q", "*?*?*?*?*?*?*?*?*?*?Q"),
            ("long_stars_q", "*" * 2000 + "Q"),
            ("stars_x", "**********x"),
            ("set", "Get-Mailbo[xy]"),
            ("out", "Out-*"),
        ]:
            r[key] = sorted(m.name for m in pool.get_command_metadata(pattern))
    return r


def main():
    scenario = os.environ.get("SCENARIO", "table")
    try:
        res = globals()["scenario_" + scenario]()
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"exception": repr(e), "traceback": traceback.format_exc()}))
        sys.exit(1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
