"""Download speed: `hub install URL` of a 1 GiB safetensors file from a loopback server
(hashing xxh3-128, SHA-256 and AutoV1 while it streams, AutoV3 being for add-ons only, then
identifying and registering into an existing registry) against `curl -o` of the same URL,
and `curl -o` + `sha256sum`, alternating in one run. Each command writes a new file: the
previous one is deleted just before (`hub rm` for hub), so each reuses the memory the last
one freed (on a VM that hands freed memory back to its host, memory freed seconds earlier
costs several times more to touch again, whoever touches it). Then a resume: the server
cuts the connection at 50% once, and the bytes it sends in all are counted. Last, `hub
install URL` of a small
(about 1 MB) SD1.5 kohya LoRA into the existing registry, with `curl -o` of it and the bare
interpreter start (`python -c pass`) beside. Targets: hub at least 0.9x curl's throughput;
the resume re-sends at most 51% of the file; the small install at most 0.4 s wall. CPU time
(user + system, all threads) is printed beside each wall time: on a shared machine it tells
how much of the wall time was spent waiting for a CPU.

    python bench/install.py [--size-mb 1024] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fixtures import build_small_lora
from timing import run_timed


class Server(ThreadingHTTPServer):
    daemon_threads = True


def serve(folder: Path) -> tuple[Server, dict[str, int]]:
    state = {"sent": 0, "cut": 0}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            path = folder / self.path.lstrip("/")
            data_size = path.stat().st_size
            start = 0
            if self.headers.get("Range"):
                start = int(self.headers["Range"].split("=", 1)[1].split("-", 1)[0])
            self.send_response(206 if start else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(data_size - start))
            self.send_header("ETag", '"bench"')
            self.send_header("Accept-Ranges", "bytes")
            if start:
                self.send_header("Content-Range", f"bytes {start}-{data_size - 1}/{data_size}")
            self.end_headers()
            limit = data_size - start
            if state["cut"] and not start:
                state["cut"] -= 1
                limit = data_size // 2
            with path.open("rb") as fh:
                fh.seek(start)
                left = limit
                try:
                    while left:
                        n = os.sendfile(self.wfile.fileno(), fh.fileno(), None, min(left, 8 << 20))
                        if n <= 0:
                            break
                        left -= n
                        state["sent"] += n
                except (BrokenPipeError, ConnectionResetError):
                    return
            if limit < data_size - start:
                self.connection.shutdown(2)

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state


def make_file(path: Path, size: int) -> None:
    header = json.dumps({"blob": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}})
    raw = header.encode() + b" " * (-len(header) % 8)
    block = os.urandom(64 << 20)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        left = size
        while left:
            fh.write(block[: min(left, len(block))])
            left -= min(left, len(block))


def timed(cmd: str, env: dict[str, str], before: str | None = None) -> tuple[float, float]:
    """(wall, CPU) of a command, started after the previous one's dirty pages are written
    back (so no command pays for another's writes) and, untimed, the ``before`` command."""
    if before is not None:
        subprocess.run(before, shell=True, check=True, env=env, capture_output=True)
    return run_timed(cmd, env)


def table(
    rows: dict[str, list[tuple[float, float]]],
    labels: list[tuple[str, str]],
    size_mb: float,
    base: str,
) -> None:
    """Medians of wall and CPU time per command, with MiB/s and the ratio to ``base``."""
    base_wall = statistics.median(w for w, _ in rows[base])
    print(f"{'command':<50}{'wall s':>8}{'CPU s':>7}{'MiB/s':>8}{'vs ' + base:>10}")
    for label, key in labels:
        wall = statistics.median(w for w, _ in rows[key])
        cpu = statistics.median(c for _, c in rows[key])
        print(f"{label:<50}{wall:>8.2f}{cpu:>7.2f}{size_mb / wall:>8.0f}{base_wall / wall:>10.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hub-bench-install-"))
    try:
        files = work / "files"
        src = files / "big.safetensors"
        files.mkdir()
        make_file(src, args.size_mb << 20)
        build_small_lora(files / "small.safetensors")
        server, state = serve(files)
        origin = f"http://127.0.0.1:{server.server_address[1]}"
        url = f"{origin}/big.safetensors"
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        base_env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: compiled modules cached
        hub = f"{sys.executable} -m hub"
        rows: dict[str, list[tuple[float, float]]] = {"curl": [], "curl+sha256sum": [], "hub": []}
        # an existing registry, as a user has one: creating it is a one-time cost
        env = {**base_env, "HUB_HOME": str(work / "home")}
        subprocess.run(f"{hub} list", shell=True, check=True, env=env, capture_output=True)
        curl = f"curl -s -o {work}/c.bin {url}"
        fresh = f"rm -f {work}/c.bin"
        install, uninstall = f"{hub} install {url} -y -q", f"{hub} rm big -y"
        # one untimed round of each: the first large write into memory this VM has not
        # touched yet costs several times a steady-state one, whoever makes it
        timed(curl, base_env)
        timed(install, env)
        for _ in range(args.rounds):
            rows["curl"].append(timed(curl, base_env, before=fresh))
            rows["curl+sha256sum"].append(
                timed(f"{curl} && sha256sum {work}/c.bin", base_env, before=fresh)
            )
            rows["hub"].append(timed(install, env, before=uninstall))
        size_mb = src.stat().st_size / 2**20
        print(f"file: {size_mb:.0f} MiB from a loopback server; {args.rounds} rounds alternating")
        table(
            rows,
            [
                ("curl -o", "curl"),
                ("curl -o && sha256sum", "curl+sha256sum"),
                ("hub install URL (hashes, identify, register)", "hub"),
            ],
            size_mb,
            "curl",
        )
        curl_s = statistics.median(w for w, _ in rows["curl"])
        hub_s = statistics.median(w for w, _ in rows["hub"])
        verdict = "met" if curl_s / hub_s >= 0.9 else "NOT met"
        print(f"target: hub throughput >= 0.9x curl -> {verdict}")
        state["sent"], state["cut"] = 0, 1
        env = {**base_env, "HUB_HOME": str(work / "resume")}
        subprocess.run(
            f"{hub} install {url} -y -q", shell=True, check=True, env=env, stderr=subprocess.DEVNULL
        )
        ratio = state["sent"] / src.stat().st_size
        print(
            f"resume after a cut at 50%: {ratio:.3f}x the file sent in all -> re-sent "
            f"{ratio - 0.5:.3f}x (target <= 0.51x): "
            f"{'met' if ratio - 0.5 <= 0.51 else 'NOT met'}"
        )
        small = files / "small.safetensors"
        small_url = f"{origin}/{small.name}"
        env = {**base_env, "HUB_HOME": str(work / "home")}
        install, uninstall = f"{hub} install {small_url} -y -q", f"{hub} rm small -y"
        curl = f"curl -s -o {work}/s.bin {small_url}"
        rows = {"python": [], "curl": [], "hub": []}
        timed(install, env)  # untimed: the first run of the command
        for _ in range(args.rounds * 2):
            rows["python"].append(timed(f"{sys.executable} -c pass", base_env))
            rows["curl"].append(timed(curl, base_env))
            rows["hub"].append(timed(install, env, before=uninstall))
        print(
            f"\nsmall LoRA: {small.stat().st_size / 1e6:.2f} MB, into a registry of one "
            f"artifact; {args.rounds * 2} rounds alternating"
        )
        table(
            rows,
            [
                ("python -c pass", "python"),
                ("curl -o", "curl"),
                ("hub install URL (small LoRA)", "hub"),
            ],
            small.stat().st_size / 2**20,
            "curl",
        )
        hub_s = statistics.median(w for w, _ in rows["hub"])
        verdict = "met" if hub_s <= 0.4 else "NOT met"
        print(f"target: hub install of the small LoRA <= 0.4 s -> {verdict}")
        server.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
