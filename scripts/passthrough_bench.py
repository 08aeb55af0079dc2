#!/usr/bin/env python3
"""Load-independent figures for the winrm passthrough hop (BENCHMARKS.md "passthrough").

The same setup as the pinned comparison harness (its upstream, certificates, 4 KB WS-Man POST,
contender script), reused from its folder, but measuring what does not depend on how busy the
machine is:

  stat       CPU ms per 1,000 requests while `wrk` sends POSTs (noisy on a shared machine),
             user-space instructions per request where `perf stat -e instructions:u` has
             hardware counters (not in every VM), and upstream TCP connections opened
  callgrind  the proxy runs under `valgrind --tool=callgrind`; instructions per request for
             a fixed wrk run, and the callgrind file for `callgrind_annotate`
  profile    the harness's layout (load generator and upstream on CPU 0, the proxy alone on
             CPU 1, one worker thread) with `perf record -e cpu-clock` sampling the proxy
             under the 64-connection load; prints where its CPU goes, by component and by
             symbol (user and kernel), syscalls and context switches per request, and keeps
             perf.data (--out) for `perf report`; `--peer nginx` profiles the harness's nginx
             (one worker, its config) the same way instead, for the side-by-side
  idle       RSS of the proxy at rest and with 1,000 idle TLS keep-alive connections
             (one request each, then idle), as the harness's `hold_conns.py` holds them

  scripts/passthrough_bench.py --proxy target/release/exo-authproxy --perf-dir DIR stat
DIR is the comparison harness's folder (run.sh, bench.py, upstream/, contenders/); its
upstream must be built (`cargo build --release --manifest-path DIR/upstream/Cargo.toml`).
Needs wrk, perf, valgrind. Everything listens on 127.0.0.1; every process started is stopped
by its PID at the end.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["stat", "callgrind", "profile", "idle"])
    ap.add_argument("--proxy", required=True, help="exo-authproxy binary (release)")
    ap.add_argument("--perf-dir", required=True, help="the comparison harness's folder")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--idle", type=int, default=1000, help="idle mode: connections held")
    ap.add_argument("--out", default=None, help="callgrind mode: where the callgrind file goes; profile mode: perf.data")
    ap.add_argument("--peer", choices=["nginx"], default=None,
                    help="profile mode: profile the harness's nginx instead of the proxy")
    ap.add_argument("--dhat", default=None, help="idle mode: run the proxy under valgrind's DHAT, "
                    "its heap profile (peak = with the connections held) to this file")
    a = ap.parse_args()
    perf_dir = os.path.abspath(a.perf_dir)
    sys.path.insert(0, perf_dir)
    import bench  # the harness's helpers: PKI, upstream stats, process handling

    proxy_bin = os.path.abspath(a.proxy)
    upstream_bin = os.path.join(perf_dir, "upstream", "target", "release", "perf-upstream")
    tmp = tempfile.mkdtemp(prefix="passthrough-bench.")
    procs = []
    try:
        pki = bench.make_pki(tmp, ["upstream", "proxy", "nginx"])
        token = pki["token"]
        bench.INJECTED_AUTH = "Basic " + __import__("base64").b64encode(
            f"OAuthUser@{bench.TENANT_ID}:Bearer {token}".encode()).decode()
        body_file = os.path.join(tmp, "request.xml")
        with open(body_file, "wb") as f:
            f.write(bench.build_request_body())
        up_port, port = bench.free_port(), bench.free_port()
        # profile: the pinned harness's layout; the other modes count what pinning does not move.
        loadgen_cpus, proxy_cpus = ("0", "1") if a.mode == "profile" else (None, None)
        up = bench.Proc("upstream", [upstream_bin, "--listen", f"127.0.0.1:{up_port}", "--cert",
                                     pki["upstream"][0], "--key", pki["upstream"][1], "--expect-auth",
                                     bench.INJECTED_AUTH, "--access-token", token, "--body-bytes",
                                     str(bench.RESPONSE_BYTES)], tmp, cpus=loadgen_cpus)
        procs.append(up)
        exe = proxy_bin
        tool = None
        if a.mode == "callgrind":
            out = os.path.abspath(a.out or os.path.join(tmp, "callgrind.out"))
            tool = f"--tool=callgrind --callgrind-out-file={out}"
        elif a.dhat:
            tool = f"--tool=dhat --dhat-out-file={os.path.abspath(a.dhat)}"
        if tool:
            exe = os.path.join(tmp, "under-valgrind.sh")
            with open(exe, "w") as f:  # only `serve` runs under valgrind (not hash-password)
                f.write(f'#!/bin/sh\nif [ "$1" = serve ]; then exec valgrind {tool} '
                        f'"{proxy_bin}" "$@"; fi\nexec "{proxy_bin}" "$@"\n')
            os.chmod(exe, 0o755)
        cert, key = pki["proxy"]
        env = dict(os.environ, **bench.contender_env(tmp, pki, up_port, token),
                   PERF_LISTEN_PORT=str(port), PERF_LISTEN_ADDR=f"127.0.0.1:{port}",
                   PERF_LISTEN_CERT=cert, PERF_LISTEN_KEY=key,
                   PERF_CONTENDER_DIR=os.path.join(tmp, "proxy"), TOKIO_WORKER_THREADS="1",
                   EXO_AUTHPROXY=exe, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        os.makedirs(env["PERF_CONTENDER_DIR"], exist_ok=True)
        if a.peer == "nginx":
            bench.HERE = perf_dir  # its config template
            nginx = bench.start_nginx(tmp, pki, up_port, proxy_cpus, open(body_file, "rb").read())
            proxy, port = nginx.proc, nginx.port
        else:
            proxy = bench.Proc("proxy", os.path.join(perf_dir, "contenders", "exo-authproxy.sh"),
                               tmp, env=env, shell=True, cpus=proxy_cpus)
        procs.append(proxy)
        path = f"{bench.CLIENT_PATH}?{bench.CLIENT_QUERY}"
        body = open(body_file, "rb").read()
        deadline = time.monotonic() + 180
        while True:
            try:
                status, _, _ = bench.https_post(port, path, bench.CLIENT_AUTH, body, timeout=60)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or not proxy.alive():
                raise RuntimeError(f"the proxy never answered 200: {proxy.tail()}")
            time.sleep(0.2)
        server = [p for p in bench.tree(proxy.pid) if p != proxy.pid] or [proxy.pid]
        server = max(server)  # exec'd: the script's pid is the server's (or valgrind's child)

        def wrk(seconds):
            env = dict(os.environ, PERF_PATH=path, PERF_AUTH=bench.CLIENT_AUTH, PERF_BODY_FILE=body_file)
            pin = ["taskset", "-c", loadgen_cpus] if loadgen_cpus else []
            r = subprocess.run(pin + ["wrk", "-t1", f"-c{a.conns}", f"-d{seconds}s", "--timeout", "10s", "-s",
                                os.path.join(perf_dir, "wrk_post.lua"), f"https://127.0.0.1:{port}/"],
                               env=env, capture_output=True, text=True, timeout=seconds + 60)
            line = next(l for l in r.stdout.splitlines() if l.startswith("WRKJSON "))
            w = __import__("json").loads(line[8:])
            errors = w["err_connect"] + w["err_read"] + w["err_write"] + w["err_status"] + w["err_timeout"]
            return w["requests"], errors

        if a.mode == "idle":
            wrk(2)  # as in the comparison harness, load came first (the heap has grown once)
            c0 = bench.upstream_stats(up_port)["conns_total"]
            rss0 = bench.status_kib([proxy.pid] + bench.tree(proxy.pid), "VmRSS")
            t = type("T", (), {})()
            t.pids, t.port, t.auth = (lambda: bench.tree(proxy.pid)), port, bench.CLIENT_AUTH
            t.path = lambda extra="": path + extra
            ctx = type("C", (), {})()
            ctx.loadgen_cpus, ctx.upstream_port, ctx.body_file, ctx.hold_ms = None, up_port, body_file, 0
            bench.HERE = perf_dir
            r = bench.run_hold(t, a.idle, "idle", ctx)
            print(f"RSS at rest {rss0 / 1024:.1f} MiB; +{(r['rss_kib'] - r['baseline_rss_kib']) / 1024:.1f} MiB "
                  f"with {r['connections_ok']} idle keep-alive connections "
                  f"({r['kib_per_conn']:.1f} KiB each; {r['connections_failed']} failed); upstream connections "
                  f"opened for them: {bench.upstream_stats(up_port)['conns_total'] - c0 - 2}")
            return 0

        # The comparison harness's "upstream connections opened for 64 client connections":
        # new upstream connections during a 2 s warm-up run (each /__stats call is a
        # connection of its own, counted before it answers).
        w0 = bench.upstream_stats(up_port)["conns_total"]
        wrk(2)  # warm: caches, TLS sessions
        warm_conns = bench.upstream_stats(up_port)["conns_total"] - w0 - 1
        # Steady state only: a window in the middle of a longer run (after wrk's connections
        # and the proxy's upstream connections are up, before wrk cuts its requests off),
        # requests counted as the upstream's answers in that window.
        stats = lambda: bench.upstream_stats(up_port)
        ramp = 10 if a.mode == "callgrind" else 5
        load = __import__("threading").Thread(target=lambda: results.append(wrk(ramp + a.seconds + 5)))
        results = []
        load.start()
        time.sleep(ramp)
        if a.mode == "stat":
            perf_out = os.path.join(tmp, "perf.txt")
            ps = subprocess.Popen(["perf", "stat", "-x,", "-e", "instructions:u", "-p", str(server),
                                   "-o", perf_out])
            ticks0, s0 = bench.cpu_ticks([server]), stats()
            time.sleep(a.seconds)
            ticks1, s1 = bench.cpu_ticks([server]), stats()
            ps.send_signal(signal.SIGINT)
            ps.wait(10)
            text = open(perf_out).read()
            m = re.search(r"^(\d+),[^,]*,instructions", text, re.M)
            ins = int(m.group(1)) if m else None  # None: no hardware counters (a VM); use callgrind
        elif a.mode == "profile":
            data = os.path.abspath(a.out or os.path.join(tmp, "perf.data"))
            s0 = stats()
            rec = subprocess.Popen(["perf", "record", "-q", "-g", "-e", "cpu-clock", "-F", "4999", "-p",
                                    str(server), "-o", data], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            counts_out = os.path.join(tmp, "counts.txt")
            # Allocations too where libc's malloc, calloc and realloc have uprobes
            # (`perf probe -x /lib/x86_64-linux-gnu/libc.so.6 malloc`, the same for the others).
            probes = subprocess.run(["perf", "probe", "-l"], capture_output=True, text=True).stdout
            events = ["raw_syscalls:sys_enter", "context-switches"] + [
                f"probe_libc:{f}" for f in ("malloc", "calloc", "realloc") if f"probe_libc:{f} " in probes]
            counts = subprocess.Popen(["perf", "stat", "-x,", "-e", ",".join(events), "-p", str(server),
                                       "-o", counts_out])
            time.sleep(a.seconds)
            for p in (rec, counts):
                p.send_signal(signal.SIGINT)
                p.wait(30)
            s1 = stats()
            ins = None
            summarize_profile(data)
            per = max(1, s1["ok"] - s0["ok"])
            for m in re.finditer(r"^(\d+),[^,]*,([\w:-]+)", open(counts_out).read(), re.M):
                print(f"{m.group(2)} per request: {int(m.group(1)) / per:.2f}")
            print(f"perf.data: {data}")
        else:
            s0 = stats()
            subprocess.run(["callgrind_control", "-z", str(server)], check=True, capture_output=True)
            time.sleep(a.seconds)
            subprocess.run(["callgrind_control", "-d", str(server)], check=True, capture_output=True)
            s1 = stats()
            dumps = sorted(f for f in os.listdir(os.path.dirname(out)) if f.startswith(os.path.basename(out)))
            last = os.path.join(os.path.dirname(out), dumps[-1])
            ins = 0
            for line in open(last):
                if line.startswith("summary:") or line.startswith("totals:"):
                    ins = int(line.split()[1])
            print(f"callgrind file: {last}")
        load.join()
        n = s1["ok"] - s0["ok"]
        total, errors = results[0]
        print(f"requests {n} in the measured window ({total} in the run, errors {errors}), "
              f"{a.conns} client connections")
        if ins is not None:
            print(f"instructions per request (user space): {ins / max(1, n):,.0f}")
        if a.mode == "stat":
            print(f"CPU per 1,000 requests: {1000 * (ticks1 - ticks0) / bench.CLK_TCK / max(1, n) * 1000:.1f} ms")
        print(f"upstream connections opened during the warm-up run ({a.conns} new client "
              f"connections): {warm_conns}")
        print(f"upstream connections the proxy opened in the window: "
              f"{s1['conns_total'] - s0['conns_total'] - 1}")
        return 0
    finally:
        for p in reversed(procs):
            p.stop()
        if a.mode not in ("callgrind", "profile") or a.out:
            shutil.rmtree(tmp, ignore_errors=True)


# Components by symbol (first match wins); what no pattern names is "other".
COMPONENTS = [
    ("TLS record crypto (AES-GCM, GHASH)", r"aes|gcm|ghash|gfmul|aws_lc|ring_core|chacha|poly1305"),
    ("rustls (framing, state machine)", r"rustls"),
    ("hyper (HTTP/1.1)", r"hyper|httparse|^http::"),
    ("tokio (scheduler, I/O driver, timers)", r"tokio|mio::|parking_lot"),
    ("WS-Man head reader (quick-xml)", r"quick_xml|remoting::wsman"),
    ("Basic credential (HMAC-SHA-256)", r"sha2|hmac|basic_auth|sha256"),
    ("log line (tracing)", r"tracing|log_writer|fmt::"),
    ("exo-authproxy's own request path", r"exo_authproxy"),
    ("allocator and memcpy (libc)", r"malloc|free|memcpy|memmove|memset|realloc|cfree|_int_"),
    ("kernel: TCP, syscalls, scheduling", r"\[k\]"),
]


def summarize_profile(data):
    """Prints the proxy's samples grouped by component, then the top symbols."""
    r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "-g", "none", "--sort", "sym",
                        "--percent-limit", "0"], capture_output=True, text=True, check=True)
    rows = []
    for line in r.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\[[k.]\])\s+(.*)$", line)
        if m:
            rows.append((float(m.group(1)), m.group(2), m.group(3).strip()))
    groups = {}
    for pct, space, sym in rows:
        name = "other"
        for comp, pat in COMPONENTS:
            if re.search(pat, f"{space} {sym}" if comp.startswith("kernel") else sym, re.I):
                name = comp
                break
        groups[name] = groups.get(name, 0.0) + pct
    print("CPU by component (share of the proxy's samples):")
    for name, pct in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {pct:5.1f} %  {name}")
    print("top symbols:")
    for pct, space, sym in rows[:25]:
        print(f"  {pct:5.1f} %  {space} {sym[:110]}")


if __name__ == "__main__":
    sys.exit(main())
