"""How often, and for how long, this machine stops running a busy process.

    python benchmarks/stalls.py [--seconds 10]

Repeats one fixed chunk of work (a small matrix product and a little pure Python, about 1 ms)
for the given time and reports how many chunks took far longer than the typical one. On a quiet
machine there are none; on the shared VMs benchmarks/speed.py was written on there were several
0.1-0.7 s stalls per second, which is why speed.py compares epochs stretch by stretch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def chunk(a: torch.Tensor, b: torch.Tensor) -> None:
    a @ b
    sum(range(2000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--threshold", type=float, default=50.0, help="a chunk this many ms longer is a stall"
    )
    args = parser.parse_args()
    a, b = torch.randn(256, 784), torch.randn(784, 64)
    durations = []
    end = time.perf_counter() + args.seconds
    while (start := time.perf_counter()) < end:
        chunk(a, b)
        durations.append(time.perf_counter() - start)
    typical = statistics.median(durations)
    stalls = [d - typical for d in durations if d - typical > args.threshold / 1000]
    print(
        json.dumps(
            {
                "seconds": args.seconds,
                "chunks": len(durations),
                "typical_chunk_ms": round(typical * 1000, 3),
                "stalls": len(stalls),
                "stalls_per_second": round(len(stalls) / args.seconds, 2),
                "longest_stall_ms": round(max(stalls, default=0) * 1000, 1),
                "time_lost_to_stalls": f"{sum(stalls) / args.seconds:.0%}",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
