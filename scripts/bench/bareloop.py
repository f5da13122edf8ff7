"""The bare loop: the physical ceiling of the pipeline's stack, and nothing else.

`processes` x `threads` calling `requests`, one Session per thread, each POSTing a row's body
and parsing the JSON answer. No limiter, no retries, no checkpoints, no output file. The
bodies are read up front with the csv module (clean files only).

    python -m bench.bareloop --url URL --input users.csv --processes 2 --threads 10

`--trust-env` leaves `Session.trust_env` on (requests' default: every call looks up proxy
settings and .netrc in the environment); off by default, as the ceiling should be.
Prints one JSON line: {"ok": n, "other": n}.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import threading
from collections.abc import Sequence
from pathlib import Path

import requests

from bench.data import read_bodies

HEADERS = {"Content-Type": "application/json", "Accept-Encoding": "gzip"}


def run_process(
    url: str, bodies: Sequence[dict[str, float]], threads: int, trust_env: bool
) -> list[int]:
    """Send `bodies` on `threads` threads; [ok, other] counts."""
    lock = threading.Lock()
    position = iter(range(len(bodies)))
    counts = [0, 0]

    def loop() -> None:
        ok = other = 0
        with requests.Session() as session:
            session.trust_env = trust_env
            while True:
                with lock:
                    i = next(position, None)
                if i is None:
                    break
                data = json.dumps(bodies[i], separators=(",", ":")).encode()
                response = session.post(url, data=data, headers=HEADERS, timeout=(5, 30))
                if response.status_code == 200:
                    response.json()
                    ok += 1
                else:
                    other += 1
        with lock:
            counts[0] += ok
            counts[1] += other

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return counts


def _child(
    url: str, bodies: list[dict[str, float]], threads: int, trust_env: bool, out: object
) -> None:
    out.put(run_process(url, bodies, threads, trust_env))  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=10, help="per process")
    parser.add_argument("--trust-env", action="store_true")
    args = parser.parse_args(argv)
    bodies = read_bodies(args.input)
    if args.processes == 1:
        ok, other = run_process(args.url, bodies, args.threads, args.trust_env)
    else:
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        procs = [
            ctx.Process(
                target=_child,
                args=(args.url, bodies[p :: args.processes], args.threads, args.trust_env, results),
            )
            for p in range(args.processes)
        ]
        for p in procs:
            p.start()
        parts = [results.get() for _ in procs]
        for p in procs:
            p.join()
        ok, other = sum(c[0] for c in parts), sum(c[1] for c in parts)
    print(json.dumps({"ok": ok, "other": other}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
