"""``ProgressBar`` (SPEC §8)."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import threading

import pytest

from concurry import ProgressBar


def bar(**kwargs) -> tuple[ProgressBar, io.StringIO]:
    out = io.StringIO()
    return ProgressBar(file=out, **kwargs), out


def test_iterating_yields_the_items_and_ends_green():
    out = io.StringIO()
    pb = ProgressBar(range(5), desc="counting", file=out)
    assert list(pb) == [0, 1, 2, 3, 4]
    assert pb.closed and pb.colour == "green"
    assert "counting" in out.getvalue() and "5/5" in out.getvalue()


def test_iterating_a_generator_without_length():
    out = io.StringIO()
    pb = ProgressBar((i for i in range(3)), file=out)
    assert list(pb) == [0, 1, 2]
    assert pb.total is None and pb.n == 3


def test_breaking_out_of_the_loop_leaves_a_grey_bar():
    out = io.StringIO()
    pb = ProgressBar(range(10), file=out)
    it = iter(pb)
    next(it)
    it.close()
    assert pb.closed and pb.colour == "#808080"


def test_counting_with_total_and_settings():
    pb, out = bar(total=10, desc="jobs", unit="job")
    assert pb.colour == "blue", "blue while running"
    pb.update(3)
    pb.update(2)
    pb.set_description("renamed")
    pb.set_total(5)
    pb.success()
    text = out.getvalue()
    assert "renamed" in text and "5/5" in text and "job" in text
    assert pb.n == 5 and pb.total == 5


@pytest.mark.parametrize(("end", "colour"), [("success", "green"), ("failure", "red"), ("stop", "#808080")])
def test_ending_colours(end, colour):
    pb, _ = bar(total=3)
    pb.update(1)
    getattr(pb, end)()
    assert pb.closed and pb.colour == colour
    pb.success()  # ending twice is harmless and keeps the first colour
    assert pb.colour == colour


def test_close_keeps_the_colour_and_custom_running_colour():
    pb, _ = bar(total=1, color="magenta")
    assert pb.colour == "magenta"
    pb.close()
    assert pb.closed and pb.colour == "magenta"


def test_context_manager_colours_by_outcome():
    with ProgressBar(total=2, file=io.StringIO()) as ok:
        ok.update(2)
    assert ok.colour == "green"
    with pytest.raises(RuntimeError), ProgressBar(total=2, file=io.StringIO()) as failed:
        raise RuntimeError
    assert failed.colour == "red"


def test_disable_draws_nothing():
    pb, out = bar(total=5, disable=True)
    pb.update(5)
    pb.success()
    assert out.getvalue() == ""


def test_leave_false_clears_the_bar():
    pb, out = bar(total=2, leave=False, desc="temporary")
    pb.update(2)
    pb.close()
    last_line = out.getvalue().rsplit("\r", 2)[-2]
    assert "temporary" not in last_line and last_line.strip() == "", "the bar's line is blanked"


def test_nested_bars():
    out = io.StringIO()
    outer = ProgressBar(range(3), desc="outer", file=out)
    seen = []
    for i in outer:
        for j in ProgressBar(range(2), desc="inner", file=out, leave=False, position=1):
            seen.append((i, j))
    assert len(seen) == 6 and outer.colour == "green"
    assert "outer" in out.getvalue() and "inner" in out.getvalue()


def test_a_million_updates_redraw_rarely():
    pb, _ = bar(total=1_000_000)
    redraws = []
    real_update = pb.tqdm.update
    pb.tqdm.update = lambda n: (redraws.append(n), real_update(n))
    for _ in range(1_000_000):
        pb.update(1)
    pb.success()
    assert pb.n == 1_000_000 and pb.tqdm.n == 1_000_000, "batched updates are all counted"
    assert len(redraws) < 2_000, f"{len(redraws)} hand-overs to tqdm for 1,000,000 updates"


def test_updates_from_many_threads_are_all_counted():
    pb, _ = bar(total=40_000)

    def work():
        for _ in range(10_000):
            pb.update(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pb.success()
    assert pb.tqdm.n == 40_000


def test_console_bar_is_a_text_bar():
    from tqdm.notebook import tqdm as notebook_tqdm
    from tqdm.std import tqdm as std_tqdm

    pb, _ = bar(total=1)
    assert isinstance(pb.tqdm, std_tqdm) and not isinstance(pb.tqdm, notebook_tqdm)
    pb.close()


def test_in_a_notebook_the_bar_is_tqdms_notebook_widget():
    import IPython  # noqa: F401 - both come with the dev extra: a missing one is a failure
    import ipywidgets  # noqa: F401
    # A simulated Jupyter kernel: tqdm.auto looks for ipykernel's shell and asks IPython for it.
    code = textwrap.dedent(
        """
        import sys, types, IPython
        class ZMQInteractiveShell:  # what a Jupyter kernel's get_ipython() returns
            config = {"IPKernelApp": {}}
        IPython.get_ipython = lambda: ZMQInteractiveShell()
        sys.modules["ipykernel.zmqshell"] = types.ModuleType("ipykernel.zmqshell")
        from concurry import ProgressBar
        from tqdm.notebook import tqdm as notebook_tqdm
        pb = ProgressBar(total=2, desc="nb")
        pb.update(2)
        print("NOTEBOOK" if isinstance(pb.tqdm, notebook_tqdm) else type(pb.tqdm))
        pb.success()
        print("COLOUR", pb.colour)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stderr
    assert "NOTEBOOK" in proc.stdout and "COLOUR green" in proc.stdout
