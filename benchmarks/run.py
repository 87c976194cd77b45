"""Run every benchmark module (``benchmarks/bench_*.py``) and print its table.

Usage: ``python benchmarks/run.py [--quick] [--json PATH] [name ...]`` — names select modules,
e.g. ``core``. Each module defines ``run() -> list[Row]`` and a ``TITLE``; it may also define
``QUICK`` (module constants to override under ``--quick``, e.g. fewer calls) and ``SERIES`` (a
dict that ``run()`` fills with data for the charts that a table does not hold).

``--json PATH`` also writes the results (machine, time, every module's rows and series) for
``benchmarks/charts.py``. ``--quick`` runs once instead of best-of-N, with smaller sizes, and by
default only the modules the docs' charts need (well under a minute).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import pathlib
import platform
import sys
import time

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402
from common import print_table  # noqa: E402

# The modules the docs' charts and mode matrix read; ``--quick`` without names runs only these.
QUICK_MODULES = ("core", "process", "scaling", "accuracy", "ray")


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


def _load(path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    # registered under its own name, so functions defined in it pickle by reference for child
    # processes (which find the file on the inherited sys.path)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Run concurry's benchmarks and print their tables.")
    parser.add_argument("names", nargs="*", help="modules to run (bench_<name>.py); default: all")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument(
        "--quick", action="store_true", help="one run each, smaller sizes, chart modules only"
    )
    args = parser.parse_args(argv)
    available = [p.stem.removeprefix("bench_") for p in sorted(HERE.glob("bench_*.py"))]
    unknown = sorted(set(args.names) - set(available))
    if unknown:
        parser.error(f"unknown benchmark module(s) {', '.join(unknown)}; accepted: {', '.join(available)}")
    selected = args.names or (list(QUICK_MODULES) if args.quick else available)
    common.QUICK = args.quick

    results: dict = {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "modules": [],
    }
    for name in available:
        if name not in selected:
            continue
        module = _load(HERE / f"bench_{name}.py")
        if args.quick:
            for constant, value in getattr(module, "QUICK", {}).items():
                setattr(module, constant, value)
        start = time.perf_counter()
        rows = module.run()
        elapsed = time.perf_counter() - start
        print_table(module.TITLE, rows)
        entry = {
            "name": name,
            "title": module.TITLE,
            "seconds": round(elapsed, 1),  # how long the module took to run
            "rows": [r.to_dict() for r in rows],
        }
        series = getattr(module, "SERIES", None)
        if series:
            entry["series"] = series
        results["modules"].append(entry)
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1) + "\n")
        print(f"\nresults written to {path}")
    return results


if __name__ == "__main__":
    main()
