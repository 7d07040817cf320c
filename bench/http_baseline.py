"""HTTP throughput of the product beside plain gunicorn serving the same Django views.

Starts `manage.py run --demo` (production settings, SQLite, embedded Redis) and, beside it, the
same WSGI application under gunicorn with 2 sync workers (the reference), then loads both
with wrk at 50 connections: `/health` and an authenticated list endpoint
(`/api/v1/sensors/`). For context it also loads daphne (the WebSocket server) with the same
requests: that is what serving HTTP through ASGI would cost. Prints requests/s, p50 and p99,
and the product's ratio to the reference; target >= 0.80.

Usage: python bench/http_baseline.py [--duration 10] [--connections 50] [--rounds 3]
Needs wrk (`make bench-deps`). Every request goes to 127.0.0.1 and each run is bounded by
--duration.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import free_port, running_product, stop, wait_http

TARGET_RATIO = 0.80


def wrk(url: str, token: str | None, duration: int, connections: int) -> dict[str, float]:
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if token:
        argv += ["-H", f"Authorization: Token {token}"]
    out = subprocess.run(
        [*argv, url], check=True, capture_output=True, text=True, timeout=duration + 30
    ).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert found, out  # wrk prints it on every run
    rps = float(found.group(1))

    def percentile(p: str) -> float:
        found = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", out, re.M)
        assert found, out  # wrk --latency prints each percentile
        value, unit = found.groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50": percentile("50"),
        "p99": percentile("99"),
        "non2xx": float(errors.group(1)) if errors else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: run `make bench-deps`")

    password = secrets.token_urlsafe(12)
    with running_product("--demo", ready_path="/health", DEMO_PASSWORD=password) as product:
        port, ws_port, ref_port = product.port, product.ws_port, free_port()
        reference = product.start(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "energy_dashboard.wsgi:application",
                "--workers",
                "2",
                "--worker-class",
                "sync",
                "--bind",
                f"127.0.0.1:{ref_port}",
                "--log-level",
                "warning",
            ]
        )
        try:
            wait_http(f"http://127.0.0.1:{ref_port}/health", 60)
            token = login(port, "operator", password)
            measure(args, port, ref_port, ws_port, token)
        finally:
            stop(reference)


def login(port: int, username: str, password: str) -> str:
    """The API token of a user, from the token endpoint."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/auth/token/",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        return str(json.loads(r.read())["token"])


def measure(args: argparse.Namespace, port: int, ref_port: int, ws_port: int, token: str) -> None:
    """Load each server with each endpoint, print the medians and the ratios."""
    servers = {
        "product (as `manage.py run` serves HTTP)": port,
        "reference (gunicorn, 2 sync workers)": ref_port,
        "daphne (ASGI, for context)": ws_port,
    }
    endpoints = {"/health": None, "/api/v1/sensors/": token}
    results: dict[tuple[str, str], dict[str, float]] = {}
    print(
        f"wrk: 2 threads, {args.connections} connections, {args.duration}s per run, "
        f"{args.rounds} rounds in alternating order (median shown), loopback\n"
    )
    print(f"{'server':44} {'endpoint':18} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    for path, auth in endpoints.items():
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        for server_port in servers.values():
            wrk(f"http://127.0.0.1:{server_port}{path}", auth, 2, args.connections)  # warm-up

        # The machine's background work (beat's first runs, the worker) lands on whichever
        # server is measured at that moment: alternate the order and take medians.
        for round_no in range(args.rounds):
            order = list(servers.items())
            for name, server_port in order if round_no % 2 == 0 else reversed(order):
                url = f"http://127.0.0.1:{server_port}{path}"
                runs[name].append(wrk(url, auth, args.duration, args.connections))
        for name in servers:
            by_rps = sorted(runs[name], key=lambda r: r["rps"])
            r = by_rps[len(by_rps) // 2]
            results[(name, path)] = r
            print(f"{name:44} {path:18} {r['rps']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f} {r['non2xx']:8.0f}")
    print()
    product, reference, daphne = servers
    worst = 10.0
    for path in endpoints:
        ratio = results[(product, path)]["rps"] / results[(reference, path)]["rps"]
        worst = min(worst, ratio)
        daphne_ratio = results[(daphne, path)]["rps"] / results[(reference, path)]["rps"]
        print(
            f"{path:18} product/reference = {ratio:.2f} (target >= {TARGET_RATIO:.2f}); "
            f"daphne/reference = {daphne_ratio:.2f}"
        )
    print(f"\nresult: {'PASS' if worst >= TARGET_RATIO else 'BELOW TARGET'} (worst ratio {worst:.2f})")


if __name__ == "__main__":
    main()
