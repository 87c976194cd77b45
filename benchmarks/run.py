"""Run every benchmark module (``benchmarks/bench_*.py``) and print its table.

Usage: ``python benchmarks/run.py [name ...]`` — names select modules, e.g. ``thread``.
Each module defines ``run() -> list[Row]`` and a ``TITLE``.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))

from common import print_table  # noqa: E402


def main(selected: list[str]) -> None:
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if selected and name not in selected:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print_table(module.TITLE, module.run())


if __name__ == "__main__":
    main(sys.argv[1:])
