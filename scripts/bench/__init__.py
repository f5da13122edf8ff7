"""The benchmark's parts, used by scripts/bench.py (see its docstring and BENCHMARKS.md).

- `measure`: run one contender in a process of its own and measure it (wall, CPU, RSS).
- `server`: the benchmark's mock API and what it saw (arrivals, statuses, its CPU).
- `data`: input files (cached) and pipeline configs.
- `bareloop`: the physical ceiling, processes x threads of plain `requests`.
- `threadpool`: the single-process thread-pool script in use today (20 threads, one shared
  Session), re-created for comparison only.
- `jobs`: sharding and merge contenders, run in a process of their own.
- `contenders`: how each contender is started; the sharding and merge scenarios.
- `gateways`: scenario 11, the pipeline against each kind of partner gateway.
- `compare`: rounds (A B A B ...), medians, ratios and the printed table.
"""
