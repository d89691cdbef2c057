"""Benchmark of `mnistlab serve`: latency, throughput and memory of one model behind the API.

    .venv/bin/python bench/serve.py [--run DIR] [--model cnn-fast] [--requests 10000]

Starts a real `mnistlab serve` process on 127.0.0.1, then, for 1, 8 and 32 concurrent clients
(asyncio + httpx2, one connection each), posts PNGs of the mnist-5k test images to
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

import httpx2
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

    async def client(http: httpx2.AsyncClient) -> None:
        nonlocal errors, sent
        while sent < total:
            body = bodies[sent % len(bodies)]
            sent += 1
            started = time.perf_counter()
            try:
                response = await http.post(url, content=body,
                                           headers={"Content-Type": "image/png"})
                ok = response.status_code == 200
            except httpx2.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - started)
            errors += not ok

    limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx2.AsyncClient(limits=limits, timeout=30) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests": len(ms), "errors": errors, "wall_s": wall,
            "per_s": len(ms) / wall, "p50_ms": float(np.median(ms)),
            "p99_ms": float(np.percentile(ms, 99))}


WRK_SCRIPT = """
local bodies, i = {}, 0
for n = 0, COUNT - 1 do
  local f = assert(io.open(string.format("FOLDER/%04d.png", n), "rb"))
  bodies[#bodies + 1] = f:read("*all")
  f:close()
end
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "image/png"}, bodies[i])
end
"""


def _wrk(url: str, bodies: list[bytes], clients: int, total: int, folder: Path,
         expected_per_s: float) -> dict:
    """The same load from wrk (C, epoll): a Python client on the same two cores cannot keep 32
    connections busy without taking the CPU the server needs."""
    import re
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    for n, body in enumerate(bodies[:200]):
        (folder / f"{n:04d}.png").write_bytes(body)
    script = folder / "post.lua"
    script.write_text(WRK_SCRIPT.replace("COUNT", str(min(200, len(bodies))))
                      .replace("FOLDER", str(folder)))
    seconds = max(5, int(total / expected_per_s * 1.2) + 1)  # enough for `total` requests
    out = subprocess.run([shutil.which("wrk"), f"-t{min(2, clients)}", f"-c{clients}",
                          f"-d{seconds}s", "--latency", "--timeout", "10s", "-s", str(script),
                          url], capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)", out, re.M).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1000.0}[unit]

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    value, unit = re.search(r"requests in ([\d.]+)(s|m)", out).groups()
    wall = float(value) * (60 if unit == "m" else 1)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                     out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return {"clients": clients, "requests": requests, "errors": errors, "wall_s": wall,
            "per_s": requests / wall, "p50_ms": ms("50"), "p99_ms": ms("99")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="run folder (default: a quick mnist-5k study)")
    parser.add_argument("--model", default="cnn-fast")
    parser.add_argument("--requests", type=int, default=10_000, help="per concurrency level")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--client", choices=["auto", "wrk", "httpx2"], default="auto",
                        help="load generator: wrk when installed (auto), else httpx2")
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
                httpx2.get(f"{base}/api/models", timeout=2).raise_for_status()
                break
            except httpx2.HTTPError:
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
        import shutil

        use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
        print(f"load generator: {'wrk' if use_wrk else 'httpx2 (asyncio)'}")
        cpu, last_rate = {}, None
        for clients in (int(c) for c in args.clients.split(",")):
            before = process.memory_info().rss / 2**20
            server_cpu, client_cpu = sum(process.cpu_times()[:2]), time.process_time()
            if use_wrk:
                r = _wrk(url, bodies, clients, args.requests, run.parent / "wrk",
                         last_rate or 200)
            else:
                r = asyncio.run(_load(url, bodies, clients, args.requests))
            last_rate = r["per_s"]
            after = process.memory_info().rss / 2**20
            cpu[clients] = (sum(process.cpu_times()[:2]) - server_cpu,
                            time.process_time() - client_cpu, r["wall_s"])
            print(f"{r['clients']:>7} {r['requests']:>8} {r['errors']:>6} {r['per_s']:>7.0f} "
                  f"{r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['p50_ms'] / direct_ms:>12.1f} "
                  f"{before:>8.0f} MB {after:>6.0f} MB")
        print("CPU seconds per level (server, this script; wrk runs in its own process): the "
              "two share this machine's cores")
        for clients, (server_s, client_s, wall_s) in cpu.items():
            print(f"{clients:>7} server {server_s:6.1f} s  client {client_s:6.1f} s  "
                  f"wall {wall_s:6.1f} s")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    from results import recorded  # bench/results.py: this script's part of RESULTS.md

    with recorded("bench/serve.py"):
        main()
