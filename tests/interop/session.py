"""pypsrp against the exo-authproxy remoting endpoint (driven by tests/it/remoting.rs).

Environment: EXO_HOST, EXO_PORT, EXO_CA (PEM path), EXO_USER, EXO_PASSWORD, SCENARIO.
Prints one JSON object on stdout; the Rust test asserts on it. Any exception is reported as
{"exception": "..."} with exit code 1 so the Rust side shows what pypsrp said.
"""

import json
import os
import sys
import threading
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
        username=os.environ.get("EXO_USER", "admin@contoso.onmicrosoft.com"),
        password=os.environ.get("EXO_PASSWORD", "secret"),
        cert_validation=os.environ["EXO_CA"],
        operation_timeout=kw.get("operation_timeout", 20),
        read_timeout=kw.get("read_timeout", 30),
        max_envelope_size=kw.get("max_envelope_size", 153600),
    )


from common import conv


def errors(ps):
    out = []
    for e in ps.streams.error:
        out.append(
            {
                "fq_error": getattr(e, "fq_error", None),
                "message": str(e),
                "category": getattr(e, "category", None),
                "exception_message": getattr(getattr(e, "exception", None), "message", None),
            }
        )
    return out


def run(pool, name, params=None, args=None, script=None, input=None):
    ps = PowerShell(pool)
    if script is not None:
        ps.add_script(script)
    else:
        ps.add_cmdlet(name)
        for k, v in (params or {}).items():
            ps.add_parameter(k, v)
        for a in args or []:
            ps.add_argument(a)
    output = ps.invoke(input=input)
    return {
        "count": len(output),
        "output": [conv(o) for o in output[:3]],
        "last": conv(output[-1]) if output else None,
        "had_errors": ps.had_errors,
        "state": int(ps.state),
        "errors": errors(ps),
        "warnings": [str(w) for w in ps.streams.warning],
        "verbose": [str(v) for v in ps.streams.verbose],
    }


def scenario_basic():
    res = {}
    with RunspacePool(connect(), configuration_name="Microsoft.Exchange") as pool:
        res["pool_state"] = int(pool.state)
        apd = pool.application_private_data or {}
        res["psversion"] = str(conv(apd).get("PSVersionTable", {}).get("PSVersion")) if isinstance(conv(apd), dict) else None
        res["one"] = run(pool, "Get-Thing", {"Count": 1})
        res["zero"] = run(pool, "Get-Thing", {"Count": 0})
        res["many"] = run(pool, "Get-Thing", {"Count": 20000, "Light": True})
        res["streams"] = run(pool, "Write-Stuff")
        res["failed"] = run(pool, "Fail-Thing")
        res["script"] = run(pool, None, script="Get-Mailbox | Where-Object { $_.Name -like 'a*' }")
        res["input"] = run(pool, "Echo-Input", input=["a", "b", 3])
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-Thing").add_parameter("Count", 7)
        ps.add_cmdlet("Measure-Object")
        out = ps.invoke()
        res["measure"] = {"count": len(out), "first": conv(out[0]) if out else None, "state": int(ps.state)}
        meta = pool.get_command_metadata("*-Thing")
        res["metadata"] = [
            {
                "name": m.name,
                "namespace": m.namespace,
                "parameters": sorted((m.parameters or {}).keys()),
            }
            for m in meta
        ]
    res["closed"] = True
    return res


def scenario_stop():
    res = {}
    with RunspacePool(connect(operation_timeout=5), configuration_name="Microsoft.Exchange") as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Wait-Long")
        ps.begin_invoke()
        while not ps.output:
            ps.poll_invoke()
        res["before_stop"] = len(ps.output)
        ps.stop()
        res["state_after_stop"] = int(ps.state)
        # The pool still works after a stop.
        res["after"] = run(pool, "Get-Thing", {"Count": 2})
    return res


def scenario_concurrent():
    res = {}
    pools = [RunspacePool(connect(), configuration_name="Microsoft.Exchange") for _ in range(2)]
    for p in pools:
        p.open()
    res["ids_differ"] = pools[0].id != pools[1].id
    results = [None, None]

    def work(i):
        try:
            results[i] = run(pools[i], "Get-Thing", {"Count": 3000 + i, "Light": True})["count"]
        except Exception as e:  # noqa: BLE001
            results[i] = repr(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    res["counts"] = results
    for p in pools:
        p.close()
    return res


def main():
    scenario = os.environ.get("SCENARIO", "basic")
    try:
        res = globals()["scenario_" + scenario]()
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"exception": repr(e), "traceback": traceback.format_exc()}))
        sys.exit(1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
