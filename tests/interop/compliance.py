"""A legacy Security & Compliance script through exo-authproxy with the real pypsrp client.

Opens PROXY_PATH (default "compliance/powershell-liveid/") like
`New-PSSession -ConnectionUri https://<proxy>/compliance/powershell-liveid/`, then runs
Get-RetentionCompliancePolicy, Get-Label, a New- then Get- round trip (NEW_POLICY), an
eDiscovery cmdlet the proxy must refuse (New-ComplianceSearch), and REPEAT more
Get-RetentionCompliancePolicy calls. With EXCHANGE=1 an Exchange session of the same user is
open side by side and runs Get-OrganizationConfig between them.
Environment: PROXY_HOST, PROXY_PORT, PROXY_USER, PROXY_PASSWORD, PROXY_CA, PROXY_QUERY.
Prints one JSON object on stdout.
"""
import json
import os

from pypsrp.exceptions import WinRMTransportError, WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan


def wsman(path):
    query = os.environ.get("PROXY_QUERY", "")
    return WSMan(
        os.environ["PROXY_HOST"],
        port=int(os.environ["PROXY_PORT"]),
        path=path + (("?" + query) if query else ""),
        username=os.environ["PROXY_USER"],
        password=os.environ["PROXY_PASSWORD"],
        auth="basic",
        ssl=True,
        cert_validation=os.environ["PROXY_CA"],
        operation_timeout=20,
        read_timeout=60,
        max_envelope_size=512000,
    )


def run(pool, cmdlet, **params):
    ps = PowerShell(pool)
    ps.add_cmdlet(cmdlet)
    for k, v in params.items():
        ps.add_parameter(k, v)
    result = ps.invoke()
    names = []
    for o in result:
        props = getattr(o, "adapted_properties", None) or {}
        names.append(str(props.get("Name", o)))
    return {"names": names, "errors": [str(e) for e in ps.streams.error]}


def main():
    out = {"ok": False}
    path = os.environ.get("PROXY_PATH", "compliance/powershell-liveid/")
    try:
        with RunspacePool(wsman(path), configuration_name="Microsoft.Exchange") as pool:
            out["opened"] = True
            out["policies"] = run(pool, "Get-RetentionCompliancePolicy")
            if out["policies"]["errors"]:
                out["ok"] = True
                return out
            out["labels"] = run(pool, "Get-Label")
            name = os.environ.get("NEW_POLICY", "Legal hold 2026")
            out["new"] = run(pool, "New-RetentionCompliancePolicy", Name=name, ExchangeLocation="All")
            out["get_new"] = run(pool, "Get-RetentionCompliancePolicy", Identity=name)
            out["unknown"] = run(pool, "Get-RetentionCompliancePolicy", Identity="No such policy")
            out["search"] = run(pool, "New-ComplianceSearch", Name="s1", ContentMatchQuery="subject:x")
            if os.environ.get("EXCHANGE") == "1":
                with RunspacePool(wsman("powershell-liveid/"), configuration_name="Microsoft.Exchange") as exo:
                    out["exchange_org"] = run(exo, "Get-OrganizationConfig")
                    out["after_exchange"] = run(pool, "Get-Label")
            repeat = int(os.environ.get("REPEAT", "0"))
            errors = []
            for _ in range(repeat):
                errors += run(pool, "Get-RetentionCompliancePolicy")["errors"]
            out["repeat_errors"] = errors
        out["ok"] = True
    except WSManFaultError as e:
        out["fault"] = e.reason or str(e)
        out["fault_code"] = e.code
    except WinRMTransportError as e:
        out["transport_error"] = str(e)
        out["status"] = e.code
        out["body"] = e.response_text[:2000] if e.response_text else ""
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
