"""benchmarks/charts.py renders a results file into the docs' charts and tables, and
benchmarks/run.py --json writes one (each run as a real script, as ``make bench``/``make docs`` do)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHARTS = ROOT / "benchmarks" / "charts.py"
RUN = ROOT / "benchmarks" / "run.py"
PNGS = ("overhead.png", "pool_scaling.png", "limiter_accuracy.png")


def _row(name, ours, baseline_name, baseline, unit="us/call"):
    return {
        "name": name,
        "ours": ours,
        "baseline_name": baseline_name,
        "baseline": baseline,
        "unit": unit,
        "budget": "<= 1.2x",
        "ok": ours <= 1.2 * baseline,
        "ratio": ours / baseline,
    }


RESULTS = {
    "timestamp": "2026-01-02T03:04:05+00:00",
    "quick": False,
    "machine": {"python": "3.12.1", "implementation": "CPython", "cpus": 2, "platform": "Linux-test"},
    "modules": [
        {
            "name": "core",
            "title": "Core: call overhead",
            "rows": [
                _row("thread, 10,000 no-op calls then wait all", 7.3e-6, "ThreadPoolExecutor(1)", 19.7e-6),
                _row("sync, one call (+0.46 us over direct)", 0.56e-6, "direct method call", 0.1e-6),
            ],
        },
        {
            "name": "process",
            "title": "Process mode",
            "rows": [
                _row("process, 2,000 no-op calls then wait all", 41.5e-6, "ProcessPoolExecutor(1)", 233.0e-6),
            ],
        },
        {
            "name": "ray",
            "title": "Ray",
            "rows": [
                _row("ray, 2,000 no-op calls then wait all", 151.0e-6, "raw Ray: .remote() each", 139.0e-6),
            ],
        },
        {
            "name": "scaling",
            "title": "Scaling",
            "rows": [
                _row(
                    "process pool of 2, 24 x ~30 ms CPU calls",
                    16.4e-3,
                    "ProcessPoolExecutor(2)",
                    16.1e-3,
                    "ms/call",
                ),
            ],
            "series": {
                "throughput": {
                    "cpus": 2,
                    "call_seconds": 0.03,
                    "points": [
                        {"workers": 1, "ours_per_s": 31.0, "baseline_per_s": 30.5},
                        {"workers": 2, "ours_per_s": 61.0, "baseline_per_s": 62.1},
                    ],
                }
            },
        },
        {
            "name": "accuracy",
            "title": "Limiter accuracy",
            "rows": [
                _row("token_bucket, 20 per 0.5 s: units granted", 119, "allowed by the limit", 120, "units"),
            ],
            "series": {
                "token_bucket": {
                    "capacity": 20,
                    "window": 0.5,
                    "threads": 4,
                    "points": [[0.5, 40, 40.0], [1.0, 59, 60.0], [1.5, 79, 80.0]],
                },
                "sliding_window": {
                    "capacity": 20,
                    "window": 0.5,
                    "threads": 4,
                    "points": [[0.5, 40, 40.0], [1.0, 60, 60.0], [1.5, 80, 80.0]],
                },
            },
        },
    ],
}


def _charts(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, str(CHARTS), *args], capture_output=True, text=True, env=env, timeout=120, check=True
    )


def _check_pngs(out: pathlib.Path) -> None:
    from matplotlib.image import imread

    for name in PNGS:
        path = out / "charts" / name
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        height, width = imread(path).shape[:2]
        assert height >= 200 and width >= 300, (name, width, height)


@pytest.mark.timeout(120)
def test_renders_charts_and_tables_from_a_results_file(tmp_path: pathlib.Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(RESULTS))
    out = tmp_path / "docs"
    _charts("--results", str(results), "--out-dir", str(out))
    _check_pngs(out)

    matrix = (out / "generated" / "mode_matrix.md").read_text()
    for mode, figure, ratio in (
        ("thread", "7.3 us/call", "0.37x"),
        ("sync", "0.6 us/call", "5.60x"),
        ("process", "41.5 us/call", "0.18x"),
        ("ray", "151.0 us/call", "1.09x"),
    ):
        line = next(line for line in matrix.splitlines() if line.startswith(f"| `{mode}`"))
        assert figure in line and ratio in line, line
    assert "not measured in this run" in next(line for line in matrix.splitlines() if "`asyncio`" in line)
    assert "Python 3.12.1" in matrix and "2 CPUs" in matrix

    tables = (out / "generated" / "benchmarks.md").read_text()
    for text in (
        "## Core: call overhead",
        "19.7 us/call (ThreadPoolExecutor(1))",
        "16.4 ms/call",
        "119 units",
        "## Limiter accuracy",
        "2026-01-02T03:04:05+00:00",
    ):
        assert text in tables, text


@pytest.mark.timeout(120)
def test_renders_with_modules_missing_and_from_the_built_in_sample(tmp_path: pathlib.Path) -> None:
    only_core = {**RESULTS, "modules": RESULTS["modules"][:1]}
    results = tmp_path / "results.json"
    results.write_text(json.dumps(only_core))
    _charts("--results", str(results), "--out-dir", str(tmp_path / "partial"))
    _check_pngs(tmp_path / "partial")
    matrix = (tmp_path / "partial" / "generated" / "mode_matrix.md").read_text()
    assert "| `ray` |" in matrix and "7.3 us/call" in matrix

    _charts("--sample", "--out-dir", str(tmp_path / "sample"))
    _check_pngs(tmp_path / "sample")
    assert "Sample figures" in (tmp_path / "sample" / "generated" / "benchmarks.md").read_text()


@pytest.mark.timeout(120)
def test_run_writes_json_with_rows_and_series(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "results.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--json", str(path), "accuracy"],
        capture_output=True,
        text=True,
        env=env,
        timeout=100,
        check=True,
    )
    assert "| token_bucket" in done.stdout
    results = json.loads(path.read_text())
    assert results["quick"] is True and results["machine"]["cpus"] == os.cpu_count()
    (module,) = results["modules"]
    assert module["name"] == "accuracy"
    for row in module["rows"]:
        assert {"name", "ours", "baseline_name", "baseline", "unit", "budget", "ok", "ratio"} <= set(row)
        assert row["ratio"] == pytest.approx(row["ours"] / row["baseline"])
    for algorithm in ("token_bucket", "sliding_window"):
        granted = [p[1] for p in module["series"][algorithm]["points"]]
        assert granted == sorted(granted) and granted[-1] > 0


def test_run_refuses_an_unknown_module() -> None:
    done = subprocess.run([sys.executable, str(RUN), "nonesuch"], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "nonesuch" in done.stderr and "accepted: accuracy" in done.stderr
