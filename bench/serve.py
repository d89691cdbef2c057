"""Benchmark of `mnistlab serve`: latency, throughput and memory of one model behind the API.

    .venv/bin/python bench/serve.py [--run DIR] [--model cnn-fast] [--requests 10000]

Starts a real `mnistlab serve` process on 127.0.0.1, then, for 1, 8 and 32 concurrent clients
(asyncio + httpx, one connection each), posts PNGs of the mnist-5k test images to
/api/predict?model=MODEL until --requests answers have come back. Prints, per level: median and
99th-percentile latency, throughput, errors, and the server's resident memory before and after
(growth must stay under 50 MB). The baseline, measured in the same run: the same model's
predict_proba on one image in this process (no HTTP, no PNG), so the ratio shows what serving
costs. Without --run, a quick mnist-5k study is made first (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image

from mnistlab import load_dataset, load_model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pngs(images: np.ndarray) -> list[bytes]:
    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


async def _load(url: str, bodies: list[bytes], clients: int, total: int) -> dict:
    latencies: list[float] = []
    errors = 0
    sent = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors, sent
        while sent < total:
            body = bodies[sent % len(bodies)]
            sent += 1
            started = time.perf_counter()
            try:
                response = await http.post(url, content=body,
                                           headers={"Content-Type": "image/png"})
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - started)
            errors += not ok

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests": len(ms), "errors": errors, "wall_s": wall,
            "per_s": len(ms) / wall, "p50_ms": float(np.median(ms)),
            "p99_ms": float(np.percentile(ms, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="run folder (default: a quick mnist-5k study)")
    parser.add_argument("--model", default="cnn-fast")
    parser.add_argument("--requests", type=int, default=10_000, help="per concurrency level")
    parser.add_argument("--clients", default="1,8,32")
    args = parser.parse_args()

    run = args.run
    if run is None:
        run = Path(tempfile.mkdtemp(prefix="bench-serve-")) / "run"
        subprocess.run([sys.executable, "-m", "mnistlab", "study", "--dataset", "mnist-5k",
                        "--profile", "quick", "--quiet", "--out", str(run)], check=True)
    data = load_dataset("mnist-5k")
    bodies = _pngs(data.x_test)

    model = load_model(run, args.model)
    model.predict_proba(data.x_test[:1])
    started = time.perf_counter()
    for image in data.x_test[:300]:
        model.predict_proba(image)
    direct_ms = (time.perf_counter() - started) / 300 * 1000

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "mnistlab", "serve", str(run), "--port",
                               str(port)], stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{base}/api/models", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.3)
        process = psutil.Process(server.pid)
        url = f"{base}/api/predict?model={args.model}"
        asyncio.run(_load(url, bodies, 8, 500))  # warm-up: threads, allocator, caches
        print(f"model {args.model} of {run}; {psutil.cpu_count()} cores")
        print(f"baseline: predict_proba on one image in-process: {direct_ms:.2f} ms "
              f"({1000 / direct_ms:.0f} per second)")
        print(f"{'clients':>7} {'requests':>8} {'errors':>6} {'per s':>7} {'p50 ms':>7} "
              f"{'p99 ms':>7} {'p50/baseline':>12} {'RSS before':>10} {'RSS after':>9}")
        for clients in (int(c) for c in args.clients.split(",")):
            before = process.memory_info().rss / 2**20
            r = asyncio.run(_load(url, bodies, clients, args.requests))
            after = process.memory_info().rss / 2**20
            print(f"{r['clients']:>7} {r['requests']:>8} {r['errors']:>6} {r['per_s']:>7.0f} "
                  f"{r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['p50_ms'] / direct_ms:>12.1f} "
                  f"{before:>8.0f} MB {after:>6.0f} MB")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
