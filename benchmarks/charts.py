"""Render benchmark results (``benchmarks/run.py --json``) into the docs' Performance page assets.

Usage: ``python benchmarks/charts.py [--results PATH] [--out-dir docs] [--sample]``.
Writes, under the output directory:
- ``charts/overhead.png``: per-call overhead of each mode as a ratio to its baseline
  (concurrent.futures, asyncio, a direct call, raw Ray), from the core, process and ray tables;
- ``charts/pool_scaling.png``: CPU-bound calls per second by process-pool size, against
  ``ProcessPoolExecutor``;
- ``charts/limiter_accuracy.png``: units a RateLimit granted over time against what it allows;
- ``generated/mode_matrix.md``: the mode decision matrix with the measured overheads;
- ``generated/benchmarks.md``: every table in the results.
Without a results file it runs ``run.py --quick`` first; ``--sample`` uses built-in figures
instead (tests, offline builds). Matplotlib's Agg backend, no network, same input -> same files.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))

from common import scale  # noqa: E402

DEFAULT_RESULTS = HERE / "results.json"
PNG_METADATA = {"Software": None}  # no version stamp: the same results give the same bytes

# Mode, what it is for, and the row (module, name prefix) that measures its per-call overhead.
MODES = (
    (
        "sync",
        "Runs in the caller's thread: debugging, tests, calls too cheap to hand off.",
        "core",
        "sync, one call",
    ),
    (
        "thread",
        "I/O-bound work (network, files, subprocesses) and code that releases the GIL.",
        "core",
        "thread, ",
    ),
    (
        "asyncio",
        "Many concurrent async I/O calls (`async def` methods) on one event loop.",
        "core",
        "asyncio, ",
    ),
    (
        "process",
        "CPU-bound pure-Python work on several cores; arguments and results are pickled.",
        "process",
        "process, ",
    ),
    ("ray", "Work spread over a cluster's machines, CPUs and GPUs.", "ray", "ray, "),
)


# ---- results ----


def load(path: pathlib.Path) -> dict:
    if not path.exists():
        print(f"no results at {path}: running benchmarks/run.py --quick --json {path} first (about a minute)")
        subprocess.run([sys.executable, str(HERE / "run.py"), "--quick", "--json", str(path)], check=True)
    return json.loads(path.read_text())


def sample() -> dict:
    """A small, made-up results file (marked as such) with every series the charts read."""

    def row(name, ours, base_name, base, unit="us/call"):
        return {
            "name": name,
            "ours": ours,
            "baseline_name": base_name,
            "baseline": base,
            "unit": unit,
            "budget": "",
            "ok": None,
            "ratio": ours / base,
        }

    def bucket(t):
        return 20 + 40 * t

    return {
        "timestamp": "sample",
        "quick": True,
        "sample": True,
        "machine": {"python": "3", "cpus": 2, "platform": "sample"},
        "modules": [
            {
                "name": "core",
                "title": "Core (sample)",
                "rows": [
                    row("thread, 2,000 no-op calls then wait all", 6e-6, "ThreadPoolExecutor(1)", 15e-6),
                    row("asyncio, 1,000 no-op calls then wait all", 12e-6, "run_coroutine_threadsafe", 20e-6),
                    row("sync, one call (+0.40 us over direct)", 0.5e-6, "direct method call", 0.1e-6),
                ],
            },
            {
                "name": "ray",
                "title": "Ray (sample)",
                "rows": [row("ray, 500 no-op calls then wait all", 120e-6, "raw Ray", 110e-6)],
            },
            {
                "name": "scaling",
                "title": "Scaling (sample)",
                "rows": [
                    row(
                        "process pool of 2, 10 x ~30 ms CPU calls",
                        16e-3,
                        "ProcessPoolExecutor(2)",
                        17e-3,
                        "ms/call",
                    )
                ],
                "series": {
                    "throughput": {
                        "cpus": 2,
                        "call_seconds": 0.03,
                        "points": [
                            {"workers": 1, "ours_per_s": 32.0, "baseline_per_s": 31.0},
                            {"workers": 2, "ours_per_s": 62.0, "baseline_per_s": 60.0},
                        ],
                    }
                },
            },
            {
                "name": "accuracy",
                "title": "Accuracy (sample)",
                "rows": [
                    row("token_bucket, 20 per 0.5 s: units granted", 79, "allowed by the limit", 80, "units")
                ],
                "series": {
                    "token_bucket": {
                        "capacity": 20,
                        "window": 0.5,
                        "threads": 4,
                        "points": [[t / 4, int(bucket(t / 4)), bucket(t / 4)] for t in range(1, 7)],
                    }
                },
            },
        ],
    }


def module(results: dict, name: str) -> dict | None:
    return next((m for m in results["modules"] if m["name"] == name), None)


def machine_line(results: dict) -> str:
    if results.get("sample"):
        return "Sample figures, not a measurement: `make bench` writes real ones."
    m = results["machine"]
    quick = " Quick run (one repetition each, smaller sizes): noisier." if results.get("quick") else ""
    return (
        f"Measured on Python {m['python']}, {m['cpus']} CPUs, {m['platform']}, at "
        f"{results['timestamp']}.{quick} Ratios matter more than absolute figures."
    )


# ---- charts ----


def _placeholder(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in these results", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def _save(fig, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata=PNG_METADATA)
    plt.close(fig)


def overhead_chart(results: dict, path: pathlib.Path) -> None:
    bars = []  # (label, ratio, ours us, baseline name)
    for name in ("core", "process", "ray"):
        m = module(results, name)
        for r in m["rows"] if m else []:
            per_call = "no-op" in r["name"] or "one call" in r["name"]
            if r["unit"] == "us/call" and r["ratio"] is not None and per_call:
                label = r["name"].split(" (")[0]
                bars.append((f"{label}\nvs {r['baseline_name'].split(':')[0]}", r["ratio"], r["ours"] * 1e6))
    fig, ax = plt.subplots(figsize=(9, 0.75 * max(len(bars), 2) + 1.2))
    if not bars:
        _placeholder(ax, "per-call overhead rows")
    else:
        labels = [b[0] for b in bars][::-1]
        ratios = [b[1] for b in bars][::-1]
        colors = ["tab:green" if x <= 1 else "tab:orange" for x in ratios]
        # bars grow from 1 (as fast as the baseline) on a log scale, so 0.5x and 2x look alike
        ax.barh(labels, [x - 1 for x in ratios], left=1, color=colors)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.axvline(1.0, color="black", linewidth=1)
        for y, (ratio, (_, _, us)) in enumerate(zip(ratios, bars[::-1], strict=True)):
            ax.text(
                max(ratio, 1),
                y,
                f" {ratio:.2f}x ({us:,.1f} us/call)",
                va="center",
                fontsize=8,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
            )
        ax.set_xlim(min(min(ratios), 1) / 1.5, max(max(ratios), 1) * 10)  # room for the labels
        ax.set_xlabel("time per call / the baseline's, log scale (left of 1 = faster than the baseline)")
        ax.tick_params(axis="y", labelsize=8)
    ax.set_title("Per-call overhead by mode, against its baseline")
    _save(fig, path)


def scaling_chart(results: dict, path: pathlib.Path) -> None:
    m = module(results, "scaling")
    series = (m or {}).get("series", {}).get("throughput")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if not series:
        _placeholder(ax, "pool scaling series")
    else:
        points = series["points"]
        workers = [p["workers"] for p in points]
        width = 0.38
        xs = range(len(points))
        ax.bar(
            [x - width / 2 for x in xs],
            [p["ours_per_s"] for p in points],
            width,
            label="concurry process pool",
        )
        ax.bar(
            [x + width / 2 for x in xs],
            [p["baseline_per_s"] for p in points],
            width,
            label="concurrent.futures.ProcessPoolExecutor",
        )
        one = points[0]["baseline_per_s"] / points[0]["workers"]
        ideal = [one * min(w, series["cpus"] or w) for w in workers]
        ax.plot(list(xs), ideal, "k--", marker="o", label=f"ideal on {series['cpus']} CPUs")
        ax.set_xticks(list(xs), [str(w) for w in workers])
        ax.set_xlabel("workers")
        ax.set_ylabel(f"calls per second (one call: {series['call_seconds'] * 1e3:.0f} ms on one worker)")
        ax.legend(fontsize=8)
    ax.set_title("CPU-bound throughput by pool size")
    _save(fig, path)


def limiter_chart(results: dict, path: pathlib.Path) -> None:
    m = module(results, "accuracy")
    series = (m or {}).get("series", {})
    fig, axes = plt.subplots(1, max(len(series), 1), figsize=(5.5 * max(len(series), 1), 4.2), squeeze=False)
    if not series:
        _placeholder(axes[0][0], "limiter series")
    for ax, (algorithm, s) in zip(axes[0], sorted(series.items()), strict=False):
        t = [p[0] for p in s["points"]]
        ax.plot(t, [p[1] for p in s["points"]], label="granted")
        ax.plot(t, [p[2] for p in s["points"]], "k--", label="allowed by the limit")
        ax.set_title(f"{algorithm}: {s['capacity']} per {s['window']} s, {s['threads']} threads", fontsize=10)
        ax.set_xlabel("seconds since the first grant")
        ax.set_ylabel("units, cumulative")
        ax.legend(fontsize=8)
    fig.suptitle("RateLimit: units granted vs allowed over time")
    _save(fig, path)


# ---- Markdown ----


def _fmt(value: float | None, unit: str) -> str:
    return "—" if value is None else f"{scale(value, unit)} {unit}"


def mode_matrix(results: dict) -> str:
    lines = [
        "| mode | what it is for | per-call overhead | baseline | ratio |",
        "|---|---|---|---|---|",
    ]
    for mode, purpose, name, prefix in MODES:
        m = module(results, name)
        row = next((r for r in (m["rows"] if m else []) if r["name"].startswith(prefix)), None)
        if row is None:
            lines.append(
                f"| `{mode}` | {purpose} | not measured in this run (`make bench` runs all modules) | — | — |"
            )
            continue
        ratio = "—" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        lines.append(
            f"| `{mode}` | {purpose} | {_fmt(row['ours'], row['unit'])} ({row['name'].split(' (')[0]}) | "
            f"{_fmt(row['baseline'], row['unit'])} ({row['baseline_name']}) | {ratio} |"
        )
    return "\n".join(lines) + f"\n\n{machine_line(results)}\n"


def tables(results: dict) -> str:
    out = [machine_line(results), ""]
    for m in results["modules"]:
        out += [
            f"## {m['title']}",
            "",
            "| benchmark | concurry | baseline | ratio | budget | met |",
            "|---|---|---|---|---|---|",
        ]
        for r in m["rows"]:
            base = f"{_fmt(r['baseline'], r['unit'])} ({r['baseline_name']})" if r["baseline"] else "—"
            ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}x"
            met = "—" if r["ok"] is None else ("yes" if r["ok"] else "NO")
            out.append(
                f"| {r['name']} | {_fmt(r['ours'], r['unit'])} | {base} | {ratio} | {r['budget']} | {met} |"
            )
        out.append("")
    return "\n".join(out)


def render(results: dict, out_dir: pathlib.Path) -> list[pathlib.Path]:
    charts, generated = out_dir / "charts", out_dir / "generated"
    written = [
        charts / "overhead.png",
        charts / "pool_scaling.png",
        charts / "limiter_accuracy.png",
        generated / "mode_matrix.md",
        generated / "benchmarks.md",
    ]
    overhead_chart(results, written[0])
    scaling_chart(results, written[1])
    limiter_chart(results, written[2])
    generated.mkdir(parents=True, exist_ok=True)
    written[3].write_text(mode_matrix(results))
    written[4].write_text(tables(results))
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Render benchmark results into the docs' charts and tables.")
    parser.add_argument(
        "--results",
        type=pathlib.Path,
        default=DEFAULT_RESULTS,
        help="results JSON from run.py --json (default: benchmarks/results.json)",
    )
    parser.add_argument(
        "--out-dir",
        type=pathlib.Path,
        default=pathlib.Path("docs"),
        help="writes charts/ and generated/ under it (default: docs)",
    )
    parser.add_argument(
        "--sample", action="store_true", help="use built-in sample figures, not a results file"
    )
    args = parser.parse_args(argv)
    results = sample() if args.sample else load(args.results)
    for path in render(results, args.out_dir):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
