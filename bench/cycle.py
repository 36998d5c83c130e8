"""What one scheduling cycle costs with many live workflows: incremental against planning everything.

    python -m bench.cycle [--workflows 2000 5000 10000] [--cycles 5] [--finished 5000]

The real ``SchedulingLoop`` on the integration layer's in-memory API server (tests/controllers/
fake_cluster.py: no network, no control plane, so the figures are the loop's own CPU). Per size, a
queue holds ``N`` single-step workflows: 1% running (a long step), the rest pending behind the queue's
quota; ``--finished M`` adds M one-step workflows that have ended (a cluster keeps them until their TTL).
Two situations, each timed over ``--cycles`` cycles, in one run, with the incremental cycle on
and off (off: every workflow planned every cycle, as before the incremental cycle):

  idle     nothing changed since the last cycle (a watch event of an unrelated object woke the loop)
  one-end  one running step ended (the next pending step is admitted)

Prints a table (median ms per cycle and the ratio) and writes bench/results/cycle.json. A benchmark,
not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from tests.controllers.builders import queue, step, workflow
from tests.controllers.fake_cluster import FakeCluster, Operator

RESULTS = Path(__file__).resolve().parent / "results"


async def _measure(n: int, cycles: int, incremental: bool, finished: int = 0) -> dict[str, float]:
    running = max(1, n // 100)
    cluster = FakeCluster(nodes=max(4, running // 50 + 1) + finished // 64 + 1, node_cpu="64")
    cluster.apply(queue("q", cpu=running))
    cluster.apply(queue("done", cpu=finished or 1))
    for i in range(finished):  # one-step workflows that end at once (--finished)
        cluster.apply(workflow(f"f{i:05d}", "done", [step("a", cpu="1", duration="1s")]))
    op = Operator(cluster)
    op.loop.verify_incremental = False
    for _ in range(4 if finished else 0):
        await op.cycle()
        cluster.clock.advance(2)
        cluster.run_pods()
    for i in range(n):
        cluster.clock.advance(0.001)
        # Staggered durations: in "one-end" exactly one running step ends per cycle.
        cluster.apply(workflow(f"w{i:05d}", "q", [step("a", cpu="1", duration=f"{3600 + i}s")]))
    op.loop.incremental = incremental
    for _ in range(6):  # admit the first ones, write every status, see it all back
        await op.cycle()
        cluster.run_pods()
    out: dict[str, list[float]] = {"idle": [], "one-end": []}
    for _ in range(cycles):
        cluster.deliver()
        started = time.process_time()
        await op.loop.cycle()
        out["idle"].append(time.process_time() - started)
        await op.settle()
    cluster.clock.advance(3600)
    for _ in range(cycles):
        cluster.clock.advance(1)
        cluster.run_pods()
        cluster.deliver()
        started = time.process_time()
        await op.loop.cycle()
        out["one-end"].append(time.process_time() - started)
        await op.settle()
    return {k: statistics.median(v) * 1000 for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workflows", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument(
        "--finished", type=int, default=0, help="finished one-step workflows present as well (default 0)"
    )
    args = parser.parse_args(argv)
    rows = []
    print(f"{'workflows':>9} {'situation':>9} {'incremental ms':>15} {'everything ms':>14} {'ratio':>6}")
    for n in args.workflows:
        inc = asyncio.run(_measure(n, args.cycles, incremental=True, finished=args.finished))
        full = asyncio.run(_measure(n, args.cycles, incremental=False, finished=args.finished))
        for situation in ("idle", "one-end"):
            row = {
                "workflows": n,
                "finished": args.finished,
                "situation": situation,
                "incremental_ms": round(inc[situation], 1),
                "everything_ms": round(full[situation], 1),
                "ratio": round(full[situation] / max(inc[situation], 1e-9), 1),
            }
            rows.append(row)
            inc_ms, full_ms = row["incremental_ms"], row["everything_ms"]
            print(f"{n:>9} {situation:>9} {inc_ms:>15} {full_ms:>14} {row['ratio']:>6}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cycle.json").write_text(json.dumps({"cpu_ms_per_cycle_median": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
