"""Measure how many responses per second the embedded mock API serves.

The mock runs in its own process (`start_mock_process`, latency 0); this process drives it
with `--threads` keep-alive connections, one `requests.Session` per thread, for `--seconds`,
and prints responses/s. Example:

    .venv/bin/python scripts/mock_throughput.py --seconds 10 --threads 20 --cards 15
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import dataclass

import requests

from pipeline.mockapi import MockSettings, start_mock_process

BODY = {
    "amazon_spends": 8000,
    "flipkart_spends": 3000,
    "grocery_spends_online": 4000,
    "online_food_ordering": 2500,
    "other_online_spends": 1500,
    "other_offline_spends": 6000,
    "dining_or_going_out": 3000,
    "fuel": 4000,
    "school_fees": 0,
    "rent": 20000,
    "mobile_phone_bills": 800,
    "electricity_bills": 2500,
    "water_bills": 300,
    "ott_channels": 600,
    "all_pharmacy": 1200,
    "hotels_annual": 40000,
    "flights_annual": 60000,
    "insurance_health_annual": 25000,
    "insurance_car_or_bike_annual": 12000,
    "large_electronics_purchase_like_mobile_tv_etc": 50000,
    "domestic_lounge_usage_quarterly": 2,
    "international_lounge_usage_quarterly": 1,
}


@dataclass
class Tally:
    """One driver thread's counts."""

    ok: int = 0
    other: int = 0
    wire_bytes: int = 0
    json_bytes: int = 0


def drive(url: str, deadline: float, use_gzip: bool, offset: int, tally: Tally) -> None:
    """POST varied bodies to `url` until `deadline` (monotonic seconds), counting answers."""
    headers = {
        "Accept-Encoding": "gzip" if use_gzip else "identity",
        "Content-Type": "application/json",
    }
    # Bodies vary as real users' do; encoded up front, as a client that prepares its batch would.
    bodies = [json.dumps({**BODY, "amazon_spends": 5000 + offset + i}).encode() for i in range(100)]
    with requests.Session() as session:
        session.trust_env = False  # else every call scans the environment for proxies and .netrc
        i = 0
        while time.monotonic() < deadline:
            response = session.post(url, data=bodies[i % 100], headers=headers, timeout=30)
            i += 1
            if response.status_code == 200:
                tally.ok += 1
                tally.json_bytes += len(response.content)
                tally.wire_bytes += int(response.headers.get("Content-Length", 0))
            else:
                tally.other += 1


def measure(url: str, seconds: float, threads: int, use_gzip: bool) -> tuple[Tally, float]:
    """Run `threads` drivers for `seconds`; returns the summed tally and the elapsed seconds."""
    tallies = [Tally() for _ in range(threads)]
    started = time.monotonic()
    deadline = started + seconds
    workers = [
        threading.Thread(target=drive, args=(url, deadline, use_gzip, n * 1000, tallies[n]))
        for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started
    total = Tally()
    for tally in tallies:
        total.ok += tally.ok
        total.other += tally.other
        total.wire_bytes += tally.wire_bytes
        total.json_bytes += tally.json_bytes
    return total, elapsed


def mock_cpu_s(base_url: str) -> float:
    """CPU seconds the mock's process has used so far, from its stats route."""
    stats = requests.get(base_url + "/_mock/stats", timeout=10).json()
    return float(stats["process_cpu_s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to measure")
    parser.add_argument("--threads", type=int, default=20, help="concurrent connections")
    parser.add_argument("--cards", type=int, default=15, help="catalogue size, 1..100")
    parser.add_argument(
        "--gzip", action=argparse.BooleanOptionalAction, default=True, help="ask for gzip"
    )
    args = parser.parse_args(argv)
    settings = MockSettings(latency_ms=0, jitter_ms=0, cards=args.cards)
    with start_mock_process(settings) as mock:
        url = mock.base_url + "/cg/api/pro"
        measure(url, min(1.0, args.seconds), args.threads, args.gzip)  # warm up connections
        mock_cpu, client_cpu = mock_cpu_s(mock.base_url), time.process_time()
        total, elapsed = measure(url, args.seconds, args.threads, args.gzip)
        mock_cpu = mock_cpu_s(mock.base_url) - mock_cpu
        client_cpu = time.process_time() - client_cpu
    answered = max(1, total.ok)
    print(
        f"{total.ok / elapsed:,.0f} responses/s: {total.ok:,} in {elapsed:.1f} s "
        f"({args.threads} threads, {args.cards} cards, gzip {'on' if args.gzip else 'off'}; "
        f"{total.json_bytes / answered / 1024:.1f} KB JSON, "
        f"{total.wire_bytes / answered / 1024:.1f} KB on the wire per response; "
        f"{total.other} non-200)"
    )
    print(
        f"CPU per response: mock {mock_cpu / answered * 1e6:,.0f} us, "
        f"client {client_cpu / answered * 1e6:,.0f} us"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
