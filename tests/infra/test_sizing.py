"""infra/sizing.md: its arithmetic reproduces its own tables, and its measured rates are the ones in
the benchmark results it cites."""

from __future__ import annotations

import contextlib
import io
import json
import re

from tests.conftest import ROOT

SIZING = ROOT / "infra" / "sizing.md"
RESULTS = ROOT / "benchmarks" / "results"


def _snippet_namespace() -> dict:
    text = SIZING.read_text(encoding="utf-8")
    section = text[text.index("## 7. Rerun the arithmetic") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, str(SIZING), "exec"), namespace)  # the note's own snippet, as a reader runs it
    return namespace


def test_the_snippet_reproduces_the_tables() -> None:
    text = SIZING.read_text(encoding="utf-8")
    ns = _snippet_namespace()
    total, e = ns["total"], ns["e"]
    assert f"| **{total:.1f}** |" in text, f"core-hours total {total:.1f} is not the table's"
    for group, hours in ns["core_h"].items():
        assert f"| {hours:.1f} |" in text, f"{group}: {hours:.1f} core-hours missing from the table"
    for workers in (16, 64, 128, 256):
        row = f"| {workers} | {total:.1f} / ({workers} × {e}) | {total / (workers * e):.1f} h |"
        assert row in text, f"wall-time row for {workers} workers does not match: {row}"
    assert f"**{ns['built']:.2f}**" in text


def test_measured_rates_match_the_benchmark_results_they_cite() -> None:
    text = SIZING.read_text(encoding="utf-8")
    ns = _snippet_namespace()
    row_2d = next(line for line in text.splitlines() if line.startswith("| 2D | **"))
    cited = re.search(r"benchmarks/results/(image2d_build[\w.]*\.json)", row_2d).group(1)
    image = json.loads((RESULTS / cited).read_text())
    assert ns["r"]["2d"] == round(image["summary"]["raw_mb_per_s"], 1)
    assert f"**{ns['r']['2d']}**" in row_2d

    ecg = json.loads((RESULTS / "ecg_build.json").read_text())
    local = [row for row in ecg["rows"] if row["config"] == "climb local (1 process)"]
    assert {row["records"] for row in local} == {5000, 20000}
    slower = min(row["records_per_s_median"] for row in local)  # the note uses the conservative one
    assert ns["r"]["1d"] == round(slower * 0.1208)
    assert f"{round(slower):,} records/s in one process" in text
