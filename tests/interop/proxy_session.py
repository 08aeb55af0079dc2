"""A legacy-style Exchange session through exo-authproxy with the real pypsrp client.

Environment: PROXY_HOST, PROXY_PORT, PROXY_USER, PROXY_PASSWORD, PROXY_CA (listener cert to
trust), optional PROXY_QUERY (e.g. "DelegatedOrg=fabrikam.onmicrosoft.com"), MAILBOXES
(ResultSize for Get-Mailbox, default 5000), COMMANDS ("org,mailbox" default).
Prints one JSON object on stdout: what worked, counts, or the error text the user would see.
"""
import json
import os
import sys

from pypsrp.exceptions import WinRMTransportError, WSManFaultError, AuthenticationError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan


def main():
    query = os.environ.get("PROXY_QUERY", "")
    path = "powershell-liveid" + (("?" + query) if query else "")
    wsman = WSMan(
        os.environ["PROXY_HOST"],
        port=int(os.environ["PROXY_PORT"]),
        path=path,
        username=os.environ["PROXY_USER"],
        password=os.environ["PROXY_PASSWORD"],
        auth="basic",
        ssl=True,
        cert_validation=os.environ["PROXY_CA"],
        operation_timeout=20,
        read_timeout=60,
        max_envelope_size=512000,
    )
    out = {"ok": False}
    commands = os.environ.get("COMMANDS", "org,mailbox").split(",")
    try:
        with RunspacePool(wsman, configuration_name="Microsoft.Exchange") as pool:
            out["opened"] = True
            if "org" in commands:
                ps = PowerShell(pool)
                ps.add_cmdlet("Get-OrganizationConfig")
                result = ps.invoke()
                out["org_errors"] = [str(e) for e in ps.streams.error]
                out["org"] = [str(getattr(o, "adapted_properties", {}).get("Name", o)) for o in result]
            if "mailbox" in commands:
                ps = PowerShell(pool)
                ps.add_cmdlet("Get-Mailbox").add_parameter("ResultSize", int(os.environ.get("MAILBOXES", "5000")))
                result = ps.invoke()
                out["mailbox_errors"] = [str(e) for e in ps.streams.error]
                out["mailboxes"] = len(result)
                out["had_errors"] = ps.had_errors
        out["ok"] = True
    except WSManFaultError as e:
        out["fault"] = e.reason or str(e)
        out["fault_code"] = e.code
    except AuthenticationError as e:
        out["auth_error"] = str(e)
    except WinRMTransportError as e:
        out["transport_error"] = str(e)
        out["status"] = e.code
        out["body"] = e.response_text[:2000] if e.response_text else ""
    except Exception as e:  # anything else: report, do not hide
        out["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
