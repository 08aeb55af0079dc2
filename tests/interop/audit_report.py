"""Runs known pipelines through exo-authproxy with pypsrp, for tests/it/audit_report.rs.

Environment: PROXY_HOST, PROXY_PORT, PROXY_USER, PROXY_PASSWORD, PROXY_CA, PROXY_QUERY,
PIPELINES (JSON: a list of pipelines, each a list of [cmdlet, {parameter: value}] piped into
each other), LEAVE_OPEN ("1": exit without closing the session, as a crashed script does).
Prints one JSON object: {"results": [{"objects": n, "errors": n, "warnings": n}, ...]}.
"""

import json
import os
import sys

from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

wsman = WSMan(
    os.environ["PROXY_HOST"],
    port=int(os.environ["PROXY_PORT"]),
    username=os.environ["PROXY_USER"],
    password=os.environ["PROXY_PASSWORD"],
    ssl=True,
    path="powershell-liveid" + (("?" + os.environ["PROXY_QUERY"]) if os.environ.get("PROXY_QUERY") else ""),
    auth="basic",
    cert_validation=os.environ["PROXY_CA"],
    operation_timeout=20,
    read_timeout=30,
)
pipelines = json.loads(os.environ["PIPELINES"])
results = []
pool = RunspacePool(wsman, configuration_name="Microsoft.Exchange")
pool.open()
for pipeline in pipelines:
    ps = PowerShell(pool)
    for cmdlet, params in pipeline:
        ps.add_cmdlet(cmdlet)
        for k, v in params.items():
            if v is None:
                ps.add_parameter(k)
            else:
                ps.add_parameter(k, v)
    out = ps.invoke()
    results.append(
        {
            "objects": len(out),
            "errors": len(ps.streams.error),
            "warnings": len(ps.streams.warning),
        }
    )
print(json.dumps({"results": results}))
sys.stdout.flush()
if os.environ.get("LEAVE_OPEN") == "1":
    os._exit(0)
pool.close()
