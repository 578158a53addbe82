"""A longer soak of the serving process: hostile requests (ml_assets_tests/serving/hostile.py) from several clients
against a real uvicorn process, while a probe measures /health; prints counts by kind and status, and the /health
latency percentiles. Fails (exit 1) on any response >= 500, a transport error, or a /health p99 above 100 ms.

    .venv/bin/python bench/soak.py [--home PATH] [--seconds 120] [--clients 2] [--requests 20000]

Without --home a small home is built in a temp folder (two hand-built bundles, a champion state and a shadow
challenger); with --home (e.g. a materialized .ml_assets) the server follows that home's champion. Only loopback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from ml_assets.core.spec import load_spec  # noqa: E402
from ml_assets.core.storage import make_path  # noqa: E402
from ml_assets_tests.serving.helpers import ServerProcess, pointer, promote, tiny_bundle, write_record  # noqa: E402
from ml_assets_tests.serving.hostile import hostile_cases  # noqa: E402


def small_home(folder: str, spec) -> str:
    root = make_path(folder)
    tiny_bundle(root, spec, "1.0.0", bias=-1.5)
    tiny_bundle(root, spec, "1.1.0", bias=0.5)
    promote(root, spec, "2013-01-05", None, pointer(spec, "1.0.0"))
    write_record(root, spec, "deployment_bundle", "2013-01-06", pointer(spec, "1.1.0"))
    return folder


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="storage root to serve (default: a small temp home)")
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--requests", type=int, default=20000, help="at most this many requests in all")
    args = parser.parse_args()
    spec = load_spec(args.dataset)
    tmp = tempfile.TemporaryDirectory(prefix="ml-assets-soak-")
    home = args.home or small_home(os.path.join(tmp.name, "home"), spec)
    cases = hostile_cases(spec, 2000, seed=11)
    counts: dict[str, dict] = {}
    lock = threading.Lock()
    sent = [0]
    latencies: list[float] = []
    probe_failures: list[str] = []
    stop = threading.Event()

    def probe(url: str) -> None:
        with httpx.Client(base_url=url, timeout=5) as client:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get("/health").status_code == 200
                    latencies.append(time.perf_counter() - started)
                    if not ok:
                        probe_failures.append("status")
                except httpx.HTTPError as exc:
                    probe_failures.append(repr(exc))
                time.sleep(0.02)

    def client(url: str, offset: int, deadline: float) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            n = offset
            while time.monotonic() < deadline:
                with lock:
                    if sent[0] >= args.requests:
                        return
                    sent[0] += 1
                case = cases[n % len(cases)]
                n += args.clients
                headers = {"content-type": case.content_type} if case.content_type else {}
                try:
                    status = http.post("/predict", content=case.body, headers=headers).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with lock:
                    counts.setdefault(case.kind, {}).setdefault(status, 0)
                    counts[case.kind][status] += 1

    log = Path(tmp.name) / "server.log"
    started = time.monotonic()
    with ServerProcess(home, log) as server:
        prober = threading.Thread(target=probe, args=(server.url,), daemon=True)
        prober.start()
        deadline = time.monotonic() + args.seconds
        workers = [threading.Thread(target=client, args=(server.url, i, deadline)) for i in range(args.clients)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        stop.set()
        prober.join(10)
        health = httpx.get(server.url + "/health", timeout=10).json()
    elapsed = time.monotonic() - started
    total = sum(sum(v.values()) for v in counts.values())
    errors = {k: v for k, v in counts.items() if any(not isinstance(s, int) or s >= 500 for s in v)}
    lat = sorted(latencies)
    print(f"{total} requests in {elapsed:.0f} s from {args.clients} clients against {home}")
    for kind, by_status in sorted(counts.items()):
        print(f"  {kind:18s} " + ", ".join(f"{s}: {n}" for s, n in sorted(by_status.items(), key=str)))
    print(f"/health: {len(lat)} probes, p50 {percentile(lat, .5) * 1000:.1f} ms, p95 {percentile(lat, .95) * 1000:.1f}"
          f" ms, p99 {percentile(lat, .99) * 1000:.1f} ms, max {lat[-1] * 1000 if lat else float('nan'):.1f} ms, "
          f"{len(probe_failures)} failed")
    print(f"shadow: {health['shadow']}")
    ok = not errors and not probe_failures and percentile(lat, .99) <= 0.100
    print(json.dumps({"requests": total, "seconds": round(elapsed, 1), "server_errors": errors,
                      "health_p50_ms": round(percentile(lat, .5) * 1000, 2),
                      "health_p99_ms": round(percentile(lat, .99) * 1000, 2),
                      "health_max_ms": round(lat[-1] * 1000, 2) if lat else None, "ok": ok}))
    tmp.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
