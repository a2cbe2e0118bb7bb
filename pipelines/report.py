"""The build report: one static HTML page for every built source under an output root.

``climb report <out>`` (and ``climb demo``) call :func:`render_report`, which writes a single
self-contained file: CSS inline, plots rendered with matplotlib (Agg, no display) and embedded as
base64 PNG ``<img>`` tags, no script or font fetched from anywhere (the machines are often
offline, and a report must open from a mail attachment or a bucket just the same). A tiny inline
script records, on ``load``, how many images the page holds and how many failed to decode
(``<body data-images=… data-broken=…>``), so a headless browser can prove the page is whole.

Layout: a summary table (one row per source, linking to its section), then one ``<section
id="src-<source>">`` per source with

* counts (items in, samples out, quarantined, shards, bytes) and throughput;
* splits (samples, items, shards per split);
* the label distribution, per split, as a bar chart (read from the rows table only);
* quarantine reasons (codes, counts, one example detail each, from ``quarantine.parquet``);
* the de-identification report (actions by kind and count);
* the arrays (dtype, shape, statistics from the manifest) and the shard table;
* pictures of a few samples, chosen by the shape of the main array and the source's modality
  (:func:`classify_array`): multichannel time series (ECG, EEG, gait) as stacked labelled traces,
  2D grey and colour images as thumbnails, a volume's three middle slices, a few frames of a
  video; and per-channel value histograms of those samples.

Only a few samples are read (random access through the shard index), and the label
distribution reads one row column, so a report over a handful of sources renders in seconds.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow.parquet as pq

from manifests.schema import (
    COL_OFFSET,
    COL_SAMPLE_ID,
    COL_SHARD,
    COL_SOURCE,
    COL_SPLIT,
    COL_SUBJECT_ID,
    MANIFEST_FILE,
    QUARANTINE_FILE,
    SPLITS,
)

log = logging.getLogger("climb.report")

#: File name of the report under the output root when no destination is given.
REPORT_FILE = "report.html"
#: Name of the pointer file that names a source's current version (``pipelines.stages.build``).
CURRENT_POINTER = "current.json"
#: Shard rows shown per source before the table is cut (the rest is summarised in one line).
MAX_SHARD_ROWS = 40
#: Classes shown in a label chart before the rest are folded into "other classes".
MAX_LABEL_CLASSES = 25
#: Row columns that are ids and bookkeeping, never labels.
BASE_ROW_COLUMNS = frozenset({COL_SAMPLE_ID, COL_SUBJECT_ID, COL_SOURCE, COL_SPLIT, COL_SHARD, COL_OFFSET})
#: Row columns tried first, in order, when looking for the label column.
LABEL_COLUMN_NAMES = ("superclasses", "labels", "label", "classes", "class", "target", "diagnosis", "y")
#: Array names tried first, in order, when choosing the array to picture.
MAIN_ARRAY_NAMES = ("signal", "image", "volume", "video", "frames", "pixels", "data", "values")
#: Modalities whose main array is a multichannel time series (channels, time).
TIMESERIES_MODALITIES = frozenset({"ecg", "eeg", "gait", "emg", "imu"})
#: Colour per split in charts (train, val, test, then anything else).
SPLIT_COLOURS = {"train": "#3b6fb6", "val": "#e0a030", "test": "#4aa56b"}
OTHER_COLOUR = "#8c8c8c"
TRACE_COLOUR = "#1d3557"

_PLOT_DPI = 100
#: Longest stretch of a time series drawn per sample, in seconds (EEG recordings run for hours).
MAX_TRACE_S = 10.0
#: Longest stretch drawn when the sampling rate is unknown, in samples.
MAX_TRACE_SAMPLES = 5000
#: Values per histogram (and per percentile estimate) before strided subsampling.
MAX_HISTOGRAM_VALUES = 1_000_000


class ReportError(RuntimeError):
    """Nothing to report: no built dataset under the output root (the message names it)."""


@dataclass(frozen=True)
class BuiltSource:
    """One published dataset found under the output root.

    Attributes:
        source: source id (``"georgia"``).
        version: the version directory's name.
        url: the dataset root ``<out>/<source>/<version>``.
        error: why the source's version could not be determined (e.g. an unreadable
            ``current.json``); ``None`` when it was.
    """

    source: str
    version: str
    url: str
    error: str | None = None


@dataclass
class SourceSummary:
    """What the summary table shows for one source (filled while its section renders)."""

    source: str
    version: str
    title: str = ""
    modality: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    shards: int = 0
    size_bytes: int = 0
    shard_seconds: float = 0.0
    error: str | None = None


# ---------------------------------------------------------------------------------------------
# Finding the built datasets
# ---------------------------------------------------------------------------------------------


def find_built_sources(out: str, storage_options: Mapping[str, Any] | None = None) -> list[BuiltSource]:
    """Every published dataset under ``out``, one per source, sorted by source id.

    ``<out>/<source>/current.json`` names the version (what ``climb build`` writes); a source
    folder without it but with published versions reports the newest by ``created_at``. When
    ``out`` is itself a dataset root (it holds ``manifest.json``), that one dataset is returned.

    Args:
        out: the output root, a local path or any fsspec URL.
        storage_options: fsspec options.

    Returns:
        The datasets, sorted by source id.
    """
    fs, root = fsspec.core.url_to_fs(out, **dict(storage_options or {}))
    root = root.rstrip("/")
    base = out.rstrip("/")
    if fs.exists(f"{root}/{MANIFEST_FILE}"):
        manifest = json.loads(fs.cat_file(f"{root}/{MANIFEST_FILE}"))
        return [BuiltSource(str(manifest.get("source", "dataset")), str(manifest.get("version", "")), base)]
    if not fs.isdir(root):
        return []
    found = []
    for source_dir in sorted(fs.ls(root, detail=False)):
        source_dir = source_dir.rstrip("/")
        if not fs.isdir(source_dir):
            continue
        source = source_dir.rsplit("/", 1)[-1]
        try:
            version = _current_version(fs, source_dir)
        except ReportError as exc:
            found.append(BuiltSource(source, "", f"{base}/{source}", error=str(exc)))
            continue
        if version is not None:
            found.append(BuiltSource(source, version, f"{base}/{source}/{version}"))
    return found


def _current_version(fs: Any, source_dir: str) -> str | None:
    pointer = f"{source_dir}/{CURRENT_POINTER}"
    if fs.exists(pointer):
        try:
            version = json.loads(fs.cat_file(pointer))["version"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ReportError(f"{pointer}: not a version pointer ({exc})") from None
        return str(version)
    newest: tuple[str, str] | None = None
    for version_dir in fs.ls(source_dir, detail=False):
        path = f"{version_dir.rstrip('/')}/{MANIFEST_FILE}"
        if not fs.exists(path):
            continue
        try:
            created = str(json.loads(fs.cat_file(path)).get("created_at", ""))
        except ValueError:
            created = ""
        name = version_dir.rstrip("/").rsplit("/", 1)[-1]
        if newest is None or (created, name) > newest:
            newest = (created, name)
    return None if newest is None else newest[1]


# ---------------------------------------------------------------------------------------------
# Formatting helpers
# ---------------------------------------------------------------------------------------------


def esc(value: Any) -> str:
    """HTML-escape ``value`` as text."""
    return html.escape(str(value), quote=True)


def format_count(n: int | float | None) -> str:
    """``12345`` → ``"12,345"``; ``None`` → ``"–"``."""
    if n is None:
        return "–"
    if isinstance(n, float) and not n.is_integer():
        return f"{n:,.1f}"
    return f"{int(n):,}"


def format_bytes(n: int | float | None) -> str:
    """Bytes in binary units: ``1536`` → ``"1.5 KiB"``."""
    if n is None:
        return "–"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - loop always returns


def format_number(x: float | None, digits: int = 4) -> str:
    """A statistic with ``digits`` significant digits (``None``/NaN → ``"–"``)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}"


def shorten(text: str, width: int) -> str:
    """``text`` cut at a word boundary to at most ``width`` characters, with an ellipsis when cut.

    >>> shorten("Georgia 12-lead ECG Challenge database", 20)
    'Georgia 12-lead ECG…'
    """
    if len(text) <= width:
        return text
    head = text[: width - 1]
    if text[width - 1] != " " and " " in head:
        head = head.rsplit(" ", 1)[0]  # drop the word the cut went through
    return head.rstrip(" ,;:(") + "…"


def png_img_tag(png: bytes, alt: str, *, css_class: str = "plot") -> str:
    """An ``<img>`` tag holding ``png`` as a base64 data URI."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="{css_class}" alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def figure_png(fig: Any, *, palette: bool = True) -> bytes:
    """Render a matplotlib ``Figure`` to PNG bytes (one Agg draw, no pyplot state).

    Args:
        fig: the figure.
        palette: store the PNG with a 256-colour palette (charts and traces: about 4× smaller,
            no visible change); ``False`` keeps full RGB (photographs, frames).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    image = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])
    if palette:
        image = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    buf = io.BytesIO()
    image.save(buf, format="png", compress_level=6)
    return buf.getvalue()


def new_figure(width_px: int, height_px: int) -> Any:
    """A matplotlib ``Figure`` of the given pixel size (at the report's DPI), not tied to pyplot."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / _PLOT_DPI, height_px / _PLOT_DPI), dpi=_PLOT_DPI)
    return fig


def _style_axes(ax: Any) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.spines["left"].set_color("#999999")
    ax.spines["bottom"].set_color("#999999")
    ax.tick_params(colors="#444444", labelsize=8)


def split_colour(split: str) -> str:
    return SPLIT_COLOURS.get(split, OTHER_COLOUR)


def ordered_splits(names: Iterable[str]) -> list[str]:
    """Split names in :data:`SPLITS` order, unknown names last."""
    return sorted(set(names), key=lambda s: (SPLITS.index(s) if s in SPLITS else len(SPLITS), s))


def unit_label(units: str | None) -> str:
    """``"uV"`` → ``"µV"``; anything else unchanged; ``None`` → ``"value"``."""
    if not units:
        return "value"
    return {"uv": "µV", "mv": "mV", "v": "V", "hu": "HU"}.get(units.lower(), units)


# ---------------------------------------------------------------------------------------------
# Counts, splits, throughput, arrays, shards, quarantine, de-identification (pure: manifest → HTML)
# ---------------------------------------------------------------------------------------------


def shard_bytes(shard: Mapping[str, Any]) -> int:
    """Total bytes of one manifest shard entry (every file of the shard)."""
    return int(sum((shard.get("bytes") or {}).values()))


def summarise_manifest(manifest: Mapping[str, Any], version: str) -> SourceSummary:
    """The summary-table row of one source from its manifest (pure)."""
    counts = manifest.get("counts") or {}
    shards = manifest.get("shards") or []
    return SourceSummary(
        source=str(manifest.get("source", "?")),
        version=version,
        title=str(manifest.get("title") or ""),
        modality=str(manifest.get("modality") or ""),
        counts={
            k: int(counts.get(k, 0)) for k in ("items_in", "items_published", "samples_out", "quarantined")
        },
        splits={s: int(v.get("samples", 0)) for s, v in (manifest.get("splits") or {}).items()},
        shards=len(shards),
        size_bytes=sum(shard_bytes(s) for s in shards),
        shard_seconds=float((manifest.get("throughput") or {}).get("shard_seconds") or 0.0),
    )


def render_counts(manifest: Mapping[str, Any]) -> str:
    """KPI cards: items in, samples out, quarantined, shards, size, throughput.

    Each value carries ``data-field``/``data-value`` attributes with the manifest's exact number,
    so tools (and the tests) can read the page back.
    """
    summary = summarise_manifest(manifest, str(manifest.get("version", "")))
    counts = summary.counts
    items_in = counts["items_in"]
    quarantined = counts["quarantined"]
    share = f"{quarantined / items_in:.1%} of items" if items_in else "no items"
    windows = counts["samples_out"] / counts["items_published"] if counts["items_published"] else 0.0
    cards: list[tuple[str, int | float, str, str, str]] = [
        ("items_in", items_in, format_count(items_in), "items in", "records the index found"),
        (
            "samples_out",
            counts["samples_out"],
            format_count(counts["samples_out"]),
            "samples out",
            f"{windows:.2f} per published item",
        ),
        ("quarantined", quarantined, format_count(quarantined), "quarantined", share),
        ("shards", summary.shards, format_count(summary.shards), "shards", format_bytes(summary.size_bytes)),
    ]
    if summary.shard_seconds > 0:
        rate = items_in / summary.shard_seconds
        cards.append(
            (
                "items_per_s",
                round(rate, 3),
                f"{rate:,.0f}" if rate >= 10 else f"{rate:,.2f}",
                "items / s",
                f"per shard-second ({summary.shard_seconds:,.1f} s)",
            )
        )
    parts = []
    for key, value, shown, label, note in cards:
        warn = " warn" if key == "quarantined" and value else ""
        parts.append(
            f'<div class="kpi{warn}"><div class="kpi-value" data-field="{key}" data-value="{value}">'
            f'{esc(shown)}</div><div class="kpi-label">{esc(label)}</div>'
            f'<div class="kpi-note">{esc(note)}</div></div>'
        )
    return f'<div class="kpis">{"".join(parts)}</div>'


def render_throughput(manifest: Mapping[str, Any]) -> str:
    """Throughput table: shard seconds, items/s, samples/s, output MB/s, shards reused.

    ``shard_seconds`` is the sum of every shard task's wall time (what the build recorded), so
    rates are per shard-second: on N parallel workers the wall-clock rate is up to N times higher.
    """
    thr = manifest.get("throughput") or {}
    summary = summarise_manifest(manifest, "")
    seconds = float(thr.get("shard_seconds") or 0.0)

    def rate(n: float, unit: str) -> str:
        return f"{n / seconds:,.1f} {unit}" if seconds > 0 else "–"

    rows = [
        ("shard seconds (sum over shard tasks)", f"{seconds:,.2f} s"),
        ("items per shard-second", rate(summary.counts["items_in"], "items/s")),
        ("samples per shard-second", rate(summary.counts["samples_out"], "samples/s")),
        ("output per shard-second", rate(summary.size_bytes / 1e6, "MB/s")),
        ("shards reused from an earlier run", format_count(thr.get("shards_reused", 0))),
        ("built at", str(manifest.get("created_at", "–"))),
    ]
    for key, value in sorted(thr.items()):
        if key not in ("shard_seconds", "shards_reused") and isinstance(value, (int, float, str)):
            rows.append((key.replace("_", " "), str(value)))
    return _kv_table(rows, css_class="kv")


def _kv_table(rows: Sequence[tuple[str, str]], css_class: str = "kv") -> str:
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="{css_class}">{body}</table>'


def render_splits(manifest: Mapping[str, Any]) -> str:
    """Samples, items and shards per split, with each split's share of the samples."""
    splits = manifest.get("splits") or {}
    total = sum(int(v.get("samples", 0)) for v in splits.values()) or 1
    body = []
    for name in ordered_splits(splits):
        info = splits[name]
        samples = int(info.get("samples", 0))
        share = samples / total
        body.append(
            f'<tr data-split="{esc(name)}"><td><span class="dot" style="background:{split_colour(name)}"></span>'
            f'{esc(name)}</td><td class="num" data-field="split_samples" data-value="{samples}">'
            f'{format_count(samples)}</td><td class="num">{format_count(info.get("items"))}</td>'
            f'<td class="num">{format_count(info.get("shards"))}</td>'
            f'<td><div class="bar"><div style="width:{share * 100:.1f}%;background:{split_colour(name)}">'
            f'</div></div><span class="muted">{share:.0%}</span></td></tr>'
        )
    if not body:
        return '<p class="muted">No split has samples.</p>'
    policy = manifest.get("split_policy") or {}
    note = ""
    if policy:
        note = f'<p class="muted">split policy: {esc(policy.get("policy", "?"))}'
        if policy.get("table"):
            note += f" (table {esc(policy['table'])})"
        note += "</p>"
    return (
        '<table class="grid"><thead><tr><th>split</th><th class="num">samples</th><th class="num">items</th>'
        f'<th class="num">shards</th><th>share</th></tr></thead><tbody>{"".join(body)}</tbody></table>{note}'
    )


def render_quarantine(manifest: Mapping[str, Any], examples: Mapping[str, str] | None = None) -> str:
    """Quarantine reasons: code, count, share of items and one example detail per code."""
    counts = manifest.get("counts") or {}
    by_code = counts.get("quarantined_by_code") or {}
    if not by_code:
        return '<p class="ok">No item was quarantined.</p>'
    items_in = int(counts.get("items_in", 0)) or 1
    examples = examples or {}
    body = "".join(
        f'<tr><td><code>{esc(code)}</code></td><td class="num" data-field="quarantine_count" '
        f'data-code="{esc(code)}" data-value="{int(n)}">{format_count(n)}</td>'
        f'<td class="num">{int(n) / items_in:.1%}</td><td class="detail">{esc(examples.get(code, ""))}</td></tr>'
        for code, n in sorted(by_code.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    return (
        '<table class="grid"><thead><tr><th>reason</th><th class="num">items</th>'
        f'<th class="num">share</th><th>example detail</th></tr></thead><tbody>{body}</tbody></table>'
    )


def read_quarantine_examples(url: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, str]:
    """One example detail per quarantine code, from ``<url>/quarantine.parquet`` (empty if absent).

    Details are cut to 200 characters; item ids are already pseudonymous.
    """
    fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    path = f"{root.rstrip('/')}/{QUARANTINE_FILE}"
    if not fs.exists(path):
        return {}
    table = pq.read_table(io.BytesIO(fs.cat_file(path)), columns=["code", "detail"])
    examples: dict[str, str] = {}
    for code, detail in zip(table["code"].to_pylist(), table["detail"].to_pylist(), strict=True):
        if code not in examples:
            text = str(detail or "")
            examples[code] = text if len(text) <= 200 else text[:199] + "…"
    return examples


def render_deid(manifest: Mapping[str, Any]) -> str:
    """The de-identification report: method, namespace and actions by kind and count."""
    deid = manifest.get("deid") or {}
    if not deid:
        return '<p class="warn-text">This manifest carries no de-identification report.</p>'
    actions = deid.get("actions") or {}
    top = max([int(v) for v in actions.values()] or [1]) or 1
    body = "".join(
        f'<tr><td><code>{esc(kind)}</code></td><td class="num" data-field="deid_action" '
        f'data-kind="{esc(kind)}" data-value="{int(n)}">{format_count(n)}</td>'
        f'<td><div class="bar"><div style="width:{int(n) / top * 100:.1f}%;background:#7a5fb0"></div></div></td></tr>'
        for kind, n in sorted(actions.items(), key=lambda kv: (-int(kv[1]), kv[0]))
    )
    table = (
        '<table class="grid"><thead><tr><th>action</th><th class="num">count</th><th></th></tr></thead>'
        f"<tbody>{body}</tbody></table>"
        if body
        else '<p class="muted">No de-identification action was needed.</p>'
    )
    extra = [(k, v) for k, v in deid.items() if k not in ("actions", "method") and isinstance(v, (str, int))]
    meta = _kv_table([(k, str(v)) for k, v in extra]) if extra else ""
    method = f'<p class="method">{esc(deid["method"])}</p>' if deid.get("method") else ""
    return f"{method}{meta}{table}"


def render_arrays(manifest: Mapping[str, Any]) -> str:
    """Arrays of the schema with dtype, per-sample shape and the manifest's value statistics."""
    arrays = (manifest.get("schema") or {}).get("arrays") or {}
    stats = (manifest.get("statistics") or {}).get("arrays") or {}
    body = []
    for name, info in arrays.items():
        shape = (
            "×".join(str(d) for d in info["shape"])
            if info.get("layout") == "fixed"
            else f"ragged, {info.get('ndim')} dims"
        )
        st = stats.get(name) or {}
        body.append(
            f"<tr><td><code>{esc(name)}</code></td><td>{esc(info.get('dtype'))}</td><td>{esc(shape)}</td>"
            + "".join(
                f'<td class="num">{format_number(st.get(k))}</td>' for k in ("mean", "std", "min", "max")
            )
            + "</tr>"
        )
    if not body:
        return '<p class="muted">No arrays.</p>'
    canonical = manifest.get("canonical") or {}
    conf = canonical.get("configuration") or {}
    note = ""
    if conf:
        shown = ", ".join(
            f"{k}={v}"
            for k, v in conf.items()
            if isinstance(v, (str, int, float)) and not isinstance(v, bool)
        )
        note = (
            f'<p class="muted">canonical form <code>{esc(canonical.get("name", ""))}</code>: {esc(shown)}</p>'
        )
    return (
        '<table class="grid"><thead><tr><th>array</th><th>dtype</th><th>sample shape</th><th class="num">mean</th>'
        '<th class="num">std</th><th class="num">min</th><th class="num">max</th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{note}"
    )


def shard_digest_files(shard: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The shard's rows file and its largest array file (the two digests the table shows)."""
    files = shard.get("files") or {}
    sizes = shard.get("bytes") or {}
    rows = files.get("rows")
    prefix = str(files.get("arrays", "")).rstrip("/") + "/"
    data = [p for p in sizes if p.startswith(prefix) and not p.endswith("zarr.json")]
    largest = max(data, key=lambda p: (sizes[p], p)) if data else None
    return rows, largest


def render_shards(manifest: Mapping[str, Any], max_rows: int = MAX_SHARD_ROWS) -> str:
    """The shard table: split, index, samples, files, bytes, sha256 (short) of rows and data.

    At most ``max_rows`` rows; the rest are summed in a last row.
    """
    shards = list(manifest.get("shards") or [])
    if not shards:
        return '<p class="muted">No shards.</p>'
    body = []
    for shard in shards[:max_rows]:
        digests = shard.get("sha256") or {}
        rows_file, data_file = shard_digest_files(shard)
        rows_sha = str(digests.get(rows_file, ""))[:12] if rows_file else ""
        data_sha = str(digests.get(data_file, ""))[:12] if data_file else ""
        body.append(
            f'<tr><td>{esc(shard.get("split"))}</td><td class="num">{int(shard.get("index", 0)):05d}</td>'
            f'<td class="num" data-field="shard_samples" data-value="{int(shard.get("samples", 0))}">'
            f'{format_count(shard.get("samples"))}</td><td class="num">{format_count(shard.get("items"))}</td>'
            f'<td class="num">{len(shard.get("bytes") or {})}</td><td class="num">{format_bytes(shard_bytes(shard))}</td>'
            f'<td><code title="{esc(rows_file or "")}">{esc(rows_sha)}</code></td>'
            f'<td><code title="{esc(data_file or "")}">{esc(data_sha)}</code></td></tr>'
        )
    rest = shards[max_rows:]
    if rest:
        body.append(
            f'<tr class="more"><td colspan="2">… {len(rest):,} more shards</td>'
            f'<td class="num">{format_count(sum(int(s.get("samples", 0)) for s in rest))}</td>'
            f'<td class="num">{format_count(sum(int(s.get("items", 0)) for s in rest))}</td><td></td>'
            f'<td class="num">{format_bytes(sum(shard_bytes(s) for s in rest))}</td><td></td><td></td></tr>'
        )
    return (
        '<table class="grid shards"><thead><tr><th>split</th><th class="num">index</th>'
        '<th class="num">samples</th><th class="num">items</th><th class="num">files</th>'
        '<th class="num">bytes</th><th>sha256 rows</th><th>sha256 data</th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


# ---------------------------------------------------------------------------------------------
# Labels (rows table → counts per split → bar chart)
# ---------------------------------------------------------------------------------------------


@dataclass
class LabelCounts:
    """Label counts per split.

    Attributes:
        column: the row column they come from.
        kind: ``multilabel`` (a sample counts once per positive class), ``categorical`` (one class
            per sample) or ``numeric`` (a regression target: ``values`` holds the raw numbers).
        classes: class names in display order (empty for ``numeric``).
        by_split: ``{split: {class: samples}}``.
        values: ``{split: values}`` for ``numeric``.
        unlabelled: samples without any label, per split.
    """

    column: str
    kind: str
    classes: list[str] = field(default_factory=list)
    by_split: dict[str, dict[str, int]] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)
    unlabelled: dict[str, int] = field(default_factory=dict)


def find_label_column(manifest: Mapping[str, Any]) -> str | None:
    """The row column that holds the labels, chosen from the manifest's schema (pure).

    Preference: the names in :data:`LABEL_COLUMN_NAMES` (in that order) whose type fits the
    manifest's label kind (a list column for ``multilabel``, a scalar one otherwise), then any
    other column with ``label`` in its name. ``None`` when the labels kind is ``none`` or no
    column fits.
    """
    labels = manifest.get("labels") or {}
    kind = labels.get("kind", "other")
    if kind == "none":
        return None
    columns = {
        c["name"]: str(c.get("type", ""))
        for c in (manifest.get("schema") or {}).get("columns", [])
        if c["name"] not in BASE_ROW_COLUMNS
    }

    def fits(typ: str) -> bool:
        is_list = typ.startswith(("list<", "large_list<", "fixed_size_list<"))
        return is_list if kind == "multilabel" else not is_list or kind == "other"

    for name in LABEL_COLUMN_NAMES:
        if name in columns and fits(columns[name]):
            return name
    for name, typ in columns.items():
        if "label" in name.lower() and fits(typ):
            return name
    return None


def count_labels(
    manifest: Mapping[str, Any], rows_by_split: Mapping[str, Sequence[Any]], column: str
) -> LabelCounts:
    """Count labels per split from the label column's values (pure).

    Args:
        manifest: the dataset manifest (``labels.kind`` and ``labels.classes``).
        rows_by_split: ``{split: the label column's values}``. Multi-hot lists of length
            ``len(classes)`` count each positive index; lists of names or indices count each entry;
            ints in ``[0, len(classes))`` map to class names; negatives and ``None`` count as
            unlabelled; strings and bools count as themselves; floats under ``regression`` are
            kept as numbers.
        column: the column's name (recorded in the result).
    """
    labels = manifest.get("labels") or {}
    classes = [str(c) for c in labels.get("classes") or []]
    kind = labels.get("kind", "other")
    result = LabelCounts(column=column, kind="categorical")
    if kind == "regression":
        result.kind = "numeric"
        for split, values in rows_by_split.items():
            nums = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            result.values[split] = nums
            result.unlabelled[split] = len(values) - len(nums)
        return result

    def name_of(v: Any) -> str | None:
        if v is None:
            return None
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, (int, np.integer)):
            if v < 0:
                return None
            return classes[int(v)] if int(v) < len(classes) else str(int(v))
        if isinstance(v, float):
            return None if math.isnan(v) else format_number(v)
        return str(v)

    seen: Counter[str] = Counter()
    for split, values in rows_by_split.items():
        counter: Counter[str] = Counter()
        none = 0
        for v in values:
            if isinstance(v, (list, tuple, np.ndarray)):
                result.kind = "multilabel"
                v = list(v)
                is_multi_hot = (
                    classes
                    and len(v) == len(classes)
                    and all(isinstance(x, (bool, int, np.integer)) and x in (0, 1) for x in v)
                )
                names = (
                    [classes[i] for i, x in enumerate(v) if x]
                    if is_multi_hot
                    else [n for n in (name_of(x) for x in v) if n is not None]
                )
                if not names:
                    none += 1
                counter.update(names)
            else:
                name = name_of(v)
                if name is None:
                    none += 1
                else:
                    counter[name] += 1
        result.by_split[split] = dict(counter)
        result.unlabelled[split] = none
        seen.update(counter)
    ordered = [c for c in classes if c in seen] + sorted(set(seen) - set(classes))
    if len(ordered) > MAX_LABEL_CLASSES:
        ordered = [c for c, _ in seen.most_common(MAX_LABEL_CLASSES)]
    result.classes = ordered
    return result


def read_label_counts(ds: Any) -> LabelCounts | None:
    """The label counts of a dataset, reading only its label column (``None``: no labels)."""
    column = find_label_column(ds.manifest)
    if column is None:
        return None
    values = {split: ds.split(split).rows([column])[column].to_pylist() for split in ds.splits}
    return count_labels(ds.manifest, values, column)


def plot_label_distribution(counts: LabelCounts) -> bytes:
    """A horizontal bar chart of samples per class, stacked by split (PNG bytes)."""
    from matplotlib.ticker import MaxNLocator

    splits = ordered_splits(counts.by_split or counts.values)
    if counts.kind == "numeric":
        fig = new_figure(540, 280)
        ax = fig.add_subplot(1, 1, 1)
        data = [counts.values[s] for s in splits]
        n = sum(len(d) for d in data)
        bins = int(np.clip(2 * math.sqrt(max(n, 1)), 5, 40))
        ax.hist(data, bins=bins, stacked=True, color=[split_colour(s) for s in splits], label=splits)
        ax.set_xlabel(counts.column)
        ax.set_ylabel("samples")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(frameon=False, fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(splits))
        _style_axes(ax)
        fig.tight_layout()
        return figure_png(fig)
    classes = counts.classes
    height = max(170, 70 + 26 * max(1, len(classes)))
    fig = new_figure(540, height)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(classes))
    left = np.zeros(len(classes))
    for split in splits:
        widths = np.array([counts.by_split[split].get(c, 0) for c in classes], dtype=float)
        ax.barh(y, widths, left=left, color=split_colour(split), label=split, height=0.7)
        left += widths
    for yi, total in zip(y, left, strict=True):
        ax.text(total, yi, f" {int(total):,}", va="center", fontsize=9, color="#333333")
    ax.set_yticks(y, classes)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.invert_yaxis()
    ax.set_xlabel(
        "samples" + (" (a sample counts once per positive class)" if counts.kind == "multilabel" else "")
    )
    ax.set_xlim(0, max(1.0, float(left.max(initial=0))) * 1.12)
    ax.legend(frameon=False, fontsize=9, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(splits))
    _style_axes(ax)
    ax.tick_params(labelsize=9)
    fig.tight_layout()
    return figure_png(fig)


def render_labels(manifest: Mapping[str, Any], counts: LabelCounts | None) -> str:
    """The label section: the chart plus a note on the column and the unlabelled samples."""
    labels = manifest.get("labels") or {}
    if counts is None:
        kind = labels.get("kind", "none")
        return f'<p class="muted">No label column to chart (label kind: {esc(kind)}).</p>'
    total = sum(sum(v.values()) for v in counts.by_split.values()) + sum(
        len(v) for v in counts.values.values()
    )
    if not total:
        return f'<p class="muted">Column <code>{esc(counts.column)}</code> holds no labels.</p>'
    unlabelled = sum(counts.unlabelled.values())
    vocab = f", vocabulary {esc(labels['vocabulary'])}" if labels.get("vocabulary") else ""
    note = (
        f'<p class="muted">column <code>{esc(counts.column)}</code>, {esc(labels.get("kind", "?"))}{vocab}'
        + (f"; {unlabelled:,} samples without a label" if unlabelled else "")
        + "</p>"
    )
    return png_img_tag(plot_label_distribution(counts), f"label distribution of {counts.column}") + note


# ---------------------------------------------------------------------------------------------
# Pictures of the data
# ---------------------------------------------------------------------------------------------

#: What :func:`classify_array` returns.
PICTURE_KINDS = ("timeseries", "image_grey", "image_rgb", "volume", "video", "none")


def classify_array(shape: Sequence[int], modality: str | None = None, group: str | None = None) -> str:
    """How to picture one sample's array, from its shape and the source's modality.

    Args:
        shape: the sample's array shape (no batch axis).
        modality: the manifest's ``modality`` (``ecg``, ``xray_chest``, ``echo_video``…).
        group: the manifest's ``group`` (``1d``, ``2d``, ``3d``…).

    Returns:
        ``timeseries`` for (T,) or (channels, T) signals; ``image_grey`` for (H, W) or
        (1, H, W) or (H, W, 1); ``image_rgb`` for (H, W, 3|4) or (3|4, H, W); ``volume`` for (D, H, W) or
        (C, D, H, W) in a volume modality; ``video`` for (T, H, W[, C]); ``none`` otherwise.
    """
    mod = (modality or "").lower()
    shape = tuple(int(d) for d in shape)
    is_video = "video" in mod
    is_volume = (group == "3d" and not is_video) or (mod.startswith(("ct", "mri")) and "2d" not in mod)
    if len(shape) == 1:
        return "timeseries" if shape[0] > 1 else "none"
    if len(shape) == 2:
        channels, length = shape
        if mod in TIMESERIES_MODALITIES or group == "1d" or (channels <= 64 and length >= 8 * channels):
            return "timeseries"
        return "image_grey"
    if len(shape) == 3:
        if is_video:
            return "video"
        if is_volume:
            return "volume"
        if shape[-1] in (3, 4):
            return "image_rgb"
        if shape[0] in (3, 4):
            return "image_rgb"
        if shape[0] == 1 or shape[-1] == 1:
            return "image_grey"
        return "volume"
    if len(shape) == 4:
        if is_volume and not is_video:
            return "volume"
        return "video"
    return "none"


def main_array_name(manifest: Mapping[str, Any]) -> str | None:
    """The array to picture: the first of :data:`MAIN_ARRAY_NAMES`, else the non-bool array with
    the most dimensions (then elements)."""
    arrays = (manifest.get("schema") or {}).get("arrays") or {}
    for name in MAIN_ARRAY_NAMES:
        if name in arrays and arrays[name].get("dtype") != "bool":
            return name
    candidates = [(n, a) for n, a in arrays.items() if a.get("dtype") != "bool"]
    if not candidates:
        return None

    def size(item: tuple[str, Mapping[str, Any]]) -> tuple[int, int]:
        info = item[1]
        ndim = int(info.get("ndim") or len(info.get("shape") or []))
        return ndim, int(np.prod(info.get("shape") or [0]))

    return max(candidates, key=size)[0]


def pick_sample_positions(split_sizes: Mapping[str, int], n: int) -> list[tuple[str, int]]:
    """``n`` (split, position) pairs spread evenly over the splits' samples, in split order.

    >>> pick_sample_positions({"train": 8, "test": 2}, 3)
    [('train', 0), ('train', 4), ('test', 1)]
    """
    order = [(s, split_sizes[s]) for s in ordered_splits(split_sizes) if split_sizes[s] > 0]
    total = sum(size for _, size in order)
    if total == 0 or n <= 0:
        return []
    globals_ = sorted({round(x) for x in np.linspace(0, total - 1, min(n, total))})
    picks = []
    for g in globals_:
        start = 0
        for split, size in order:
            if g < start + size:
                picks.append((split, g - start))
                break
            start += size
    return picks


def subsample(values: np.ndarray, max_values: int = MAX_HISTOGRAM_VALUES) -> np.ndarray:
    """``values`` flattened to float64, strided down to at most ``max_values`` elements.

    A stride keeps the spread of values of images, volumes and signals (neighbouring elements
    are alike) without the memory of a float copy of a whole CT series.

    >>> subsample(np.arange(10, dtype=np.int16), 4).tolist()
    [0.0, 3.0, 6.0, 9.0]
    """
    flat = np.asarray(values).reshape(-1)
    step = max(1, math.ceil(flat.size / max(1, max_values)))
    return flat[::step].astype(np.float64)


def robust_limits(values: np.ndarray, lo_pct: float = 0.5, hi_pct: float = 99.5) -> tuple[float, float]:
    """Percentile display limits of ``values`` (equal limits are widened by one)."""
    values = subsample(values)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [lo_pct, hi_pct])
    if hi <= lo:
        lo, hi = float(lo) - 0.5, float(hi) + 0.5
    return float(lo), float(hi)


def nice_step(x: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k not below ``x`` (x > 0).

    >>> nice_step(730.0)
    1000.0
    """
    if x <= 0 or not math.isfinite(x):
        return 1.0
    k = 10 ** math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * k >= x:
            return float(m * k)
    return float(10 * k)  # pragma: no cover


def plot_timeseries(
    signal: np.ndarray,
    *,
    fs_hz: float | None,
    channel_names: Sequence[str] | None = None,
    units: str | None = None,
    channel_mask: np.ndarray | None = None,
    title: str = "",
    start_s: float = 0.0,
) -> bytes:
    """Stacked traces of a multichannel signal, one labelled row per channel (PNG bytes).

    Args:
        signal: shape (C, T) or (T,), any numeric dtype, in ``units``.
        fs_hz: sampling rate in Hz; the time axis is in seconds (samples when ``None``).
        channel_names: C names for the y-axis labels (default ``ch0``…).
        units: the signal's units (``"uV"`` is shown as µV).
        channel_mask: bool (C,), False for absent channels (drawn grey and marked absent).
        title: the figure title.
        start_s: the time of the first sample (a window cut from a longer recording).

    Channels are offset by one step (a round number of ``units`` above the largest
    0.5–99.5 percentile range of any channel), and a scale bar of one step is drawn at the right.
    """
    sig = np.asarray(signal, dtype=np.float64)
    if sig.ndim == 1:
        sig = sig[None, :]
    channels, length = sig.shape
    names = list(channel_names or [])
    if len(names) != channels:
        names = [f"ch{i}" for i in range(channels)]
    mask = np.ones(channels, dtype=bool) if channel_mask is None else np.asarray(channel_mask, dtype=bool)
    if mask.shape != (channels,):
        mask = np.ones(channels, dtype=bool)
    t = start_s + np.arange(length) / fs_hz if fs_hz else np.arange(length, dtype=np.float64)
    centred = sig - np.median(sig, axis=1, keepdims=True)
    ranges = [np.subtract(*robust_limits(centred[c])[::-1]) for c in range(channels) if mask[c]]
    step = nice_step(max(ranges or [1.0]) * 0.9)
    unit = unit_label(units)
    height = 90 + 36 * channels if channels > 1 else 220
    fig = new_figure(1140, min(height, 1400))
    ax = fig.add_subplot(1, 1, 1)
    offsets = -np.arange(channels) * step
    for c in range(channels):
        colour = TRACE_COLOUR if mask[c] else "#bbbbbb"
        ax.plot(t, centred[c] + offsets[c], color=colour, linewidth=0.7)
    labels = [n if mask[c] else f"{n} (absent)" for c, n in enumerate(names)]
    ax.set_yticks(offsets, labels)
    ax.set_ylim(offsets[-1] - step * 0.8, step * 0.8)
    ax.set_xlim(t[0], t[-1] if length > 1 else 1)
    ax.set_xlabel("time (s)" if fs_hz else "sample")
    ax.set_ylabel(f"channel (offset {step:g} {unit} apart)")
    ax.grid(axis="x", color="#e6e6e6", linewidth=0.6)
    # Scale bar: one step of the signal's units, right of the last sample.
    x_bar = t[-1] if length > 1 else 1.0
    ax.plot(
        [x_bar, x_bar],
        [offsets[0] - step / 2, offsets[0] + step / 2],
        color="#c0392b",
        linewidth=2,
        clip_on=False,
    )
    ax.annotate(
        f"{step:g} {unit}",
        (x_bar, offsets[0]),
        xytext=(6, 0),
        textcoords="offset points",
        va="center",
        fontsize=8,
        color="#c0392b",
        annotation_clip=False,
    )
    if title:
        ax.set_title(title, fontsize=9, loc="left", color="#333333")
    _style_axes(ax)
    width_px, height_px = fig.get_size_inches() * _PLOT_DPI
    fig.subplots_adjust(
        left=130 / width_px, right=1 - 70 / width_px, top=1 - 30 / height_px, bottom=48 / height_px
    )
    return figure_png(fig)


def display_window(length: int, fs_hz: float | None) -> tuple[int, int]:
    """The ``[start, stop)`` sample range of a time series to draw: all of it when short, else
    :data:`MAX_TRACE_S` seconds (:data:`MAX_TRACE_SAMPLES` without a rate) from the middle.

    >>> display_window(5000, 500.0)
    (0, 5000)
    >>> display_window(200 * 60, 200.0)
    (5000, 7000)
    """
    width = round(MAX_TRACE_S * fs_hz) if fs_hz else MAX_TRACE_SAMPLES
    if length <= width:
        return 0, length
    start = (length - width) // 2
    return start, start + width


def to_display_image(image: np.ndarray, kind: str) -> tuple[np.ndarray, str | None]:
    """An image as matplotlib shows it: (H, W) float in [0, 1] with ``"gray"``, or (H, W, 3) RGB.

    Grey images are windowed to their 0.5–99.5 percentiles; colour images of integer dtype are
    scaled by their dtype's range, float ones by their percentiles. (C, H, W) is moved to (H, W, C).
    """
    img = np.asarray(image)
    if kind == "image_grey":
        if img.ndim == 3:  # (1, H, W) or (H, W, 1)
            img = img[0] if img.shape[0] == 1 else img[..., 0]
        lo, hi = robust_limits(img)
        return np.clip((img.astype(np.float64) - lo) / (hi - lo), 0, 1), "gray"
    if img.ndim == 3 and img.shape[0] in (3, 4) and img.shape[-1] not in (3, 4):
        img = np.moveaxis(img, 0, -1)
    img = img[..., :3]
    if img.dtype.kind in "ui":
        top = float(np.iinfo(img.dtype).max) if img.dtype != np.uint8 else 255.0
        if img.dtype != np.uint8 and img.max(initial=0) <= 255:
            top = 255.0
        return np.clip(img.astype(np.float64) / top, 0, 1), None
    lo, hi = robust_limits(img)
    return np.clip((img.astype(np.float64) - lo) / (hi - lo), 0, 1), None


def thumbnail(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` (H, W[, C]) shrunk by an integer factor to at most ``max_side`` pixels a side,
    each output pixel the mean of its block (area averaging: no aliasing, and far less for
    matplotlib to resample than a 2048-pixel canvas). Smaller images come back as they are.

    >>> thumbnail(np.arange(16.0).reshape(4, 4), 2).tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    """
    img = np.asarray(image)
    factor = math.ceil(max(img.shape[0], img.shape[1]) / max(1, max_side))
    if factor <= 1:
        return img
    h, w = (img.shape[0] // factor) * factor, (img.shape[1] // factor) * factor
    blocks = img[:h, :w].reshape(h // factor, factor, w // factor, factor, *img.shape[2:])
    mean = blocks.mean(axis=(1, 3))
    return mean.astype(img.dtype) if img.dtype.kind in "ui" else mean


def middle_slices(volume: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The three middle slices of a (D, H, W) volume (or the first channel of (C, D, H, W)).

    Returns:
        ``[("axial", (H, W)), ("coronal", (D, W)), ("sagittal", (D, H))]``; for a canonical RAS
        volume stored (D, H, W) the first is the middle slice along the slice axis.
    """
    vol = np.asarray(volume)
    if vol.ndim == 4:
        vol = vol[0]
    d, h, w = vol.shape
    return [("axial", vol[d // 2]), ("coronal", vol[:, h // 2, :]), ("sagittal", vol[:, :, w // 2])]


def video_frames(video: np.ndarray, n_frames: int = 4) -> list[tuple[int, np.ndarray]]:
    """``n_frames`` frames spread over a (T, H, W[, C]) video, with their indices."""
    vid = np.asarray(video)
    idx = sorted({round(x) for x in np.linspace(0, vid.shape[0] - 1, min(n_frames, vid.shape[0]))})
    return [(int(i), vid[int(i)]) for i in idx]


def plot_image_grid(
    panels: Sequence[tuple[str, np.ndarray, str | None]],
    *,
    columns: int,
    panel_px: int = 240,
    aspects: Sequence[float] | None = None,
) -> bytes:
    """Images in a grid with a caption each (PNG bytes).

    Args:
        panels: ``(caption, display image, cmap)`` as :func:`to_display_image` returns them.
        columns: panels per row.
        panel_px: the width of one panel in pixels.
        aspects: per panel, the height/width ratio of one pixel (``None``: square pixels).
    """
    rows = max(1, math.ceil(len(panels) / columns))
    ratios = [p[1].shape[0] / max(1, p[1].shape[1]) for p in panels]
    if aspects:
        ratios = [r * a for r, a in zip(ratios, aspects, strict=True)]
    tallest = min(2.0, max(ratios or [1.0]))
    fig = new_figure(panel_px * columns, int(rows * (panel_px * tallest + 34)))
    for k, (caption, img, cmap) in enumerate(panels):
        ax = fig.add_subplot(rows, columns, k + 1)
        aspect = aspects[k] if aspects else "equal"
        ax.imshow(img, cmap=cmap, vmin=0, vmax=1, interpolation="antialiased", aspect=aspect)
        ax.set_title(caption, fontsize=8, color="#333333")
        ax.set_axis_off()
    fig.tight_layout(pad=0.4)
    return figure_png(fig, palette=all(cmap == "gray" for _, _, cmap in panels))


def draw_histogram(
    ax: Any,
    values: np.ndarray,
    value_range: tuple[float, float],
    *,
    bins: int,
    colour: str,
    label: str | None = None,
    fill: bool = True,
) -> None:
    """One histogram as a single stairs artist (``ax.hist`` draws a patch per bin: far slower)."""
    counts, edges = np.histogram(values, bins=bins, range=value_range)
    if fill:
        ax.stairs(counts, edges, fill=True, color=colour, alpha=0.85, label=label)
    else:
        ax.stairs(counts, edges, color=colour, linewidth=1.4, label=label)


def plot_channel_histograms(
    arrays: Sequence[np.ndarray],
    kind: str,
    *,
    channel_names: Sequence[str] | None = None,
    units: str | None = None,
    masks: Sequence[np.ndarray | None] | None = None,
) -> bytes:
    """Per-channel value histograms over the pictured samples (PNG bytes).

    Channels are axis 0 of a time series, the last axis of an RGB image (R, G, B overlaid), the
    last axis of a colour video; grey images and volumes have one channel. Absent channels
    (``masks``) are left out.
    """
    from matplotlib.collections import PolyCollection

    unit = unit_label(units)
    if kind == "timeseries":
        sigs = [np.atleast_2d(np.asarray(a)) for a in arrays]
        channels = sigs[0].shape[0]
        names = list(channel_names or [])
        if len(names) != channels:
            names = [f"ch{i}" for i in range(channels)]
        per_channel: list[np.ndarray] = []
        for c in range(channels):
            parts = [
                subsample(s[c], MAX_HISTOGRAM_VALUES // (len(sigs) * channels))
                for s, m in zip(sigs, masks or [None] * len(sigs), strict=True)
                if s.shape[0] == channels and (m is None or bool(np.asarray(m)[c]))
            ]
            per_channel.append(np.concatenate(parts) if parts else np.zeros(0))
        # One axes, one row per channel (a ridge plot): a dozen subplots cost ten times as much
        # to draw, and a common value axis makes channels comparable at a glance.
        present = [v for v in per_channel if v.size]
        lo, hi = robust_limits(np.concatenate(present), 0.1, 99.9) if present else (0.0, 1.0)
        edges = np.linspace(lo, hi, 81)
        fig = new_figure(1140, 70 + 28 * channels)
        ax = fig.add_subplot(1, 1, 1)
        polygons = []
        for c, vals in enumerate(per_channel):
            base = -float(c)
            if not vals.size:
                ax.text(lo, base + 0.3, "absent", fontsize=7, color="#999999")
                continue
            counts, _ = np.histogram(np.clip(vals, lo, hi), bins=edges)
            heights = counts / max(1, counts.max()) * 0.9 + base
            xs = np.repeat(edges, 2)
            ys = np.concatenate([[base], np.repeat(heights, 2), [base]])
            polygons.append(np.column_stack([xs, ys]))
            ax.text(
                hi,
                base + 0.3,
                f"  mean {vals.mean():,.0f} · sd {vals.std():,.0f}",
                fontsize=7,
                color="#555555",
                va="center",
            )
        # One collection without autoscaling: patches per channel make limit updates the slow part.
        ax.add_collection(
            PolyCollection(polygons, facecolors=TRACE_COLOUR, alpha=0.8, linewidths=0), autolim=False
        )
        ax.set_yticks(-np.arange(channels) + 0.3, names)
        ax.set_ylim(-channels + 0.8, 1.0)
        ax.set_xlim(lo, hi)
        ax.set_xlabel(f"{unit} (0.1–99.9 percentile range of all channels; values outside are clipped)")
        _style_axes(ax)
        ax.spines["left"].set_visible(False)
        ax.tick_params(axis="y", length=0)
        width_px, height_px = fig.get_size_inches() * _PLOT_DPI
        fig.subplots_adjust(
            left=80 / width_px, right=1 - 150 / width_px, top=1 - 12 / height_px, bottom=46 / height_px
        )
        return figure_png(fig)
    fig = new_figure(620, 260)
    ax = fig.add_subplot(1, 1, 1)
    flat = [np.asarray(a) for a in arrays]
    colour_last = kind in ("image_rgb", "video") and all(a.ndim >= 3 and a.shape[-1] in (3, 4) for a in flat)
    colour_first = kind == "image_rgb" and not colour_last and all(a.shape[0] in (3, 4) for a in flat)
    if colour_last or colour_first:
        for c, (name, colour) in enumerate(zip("RGB", ("#d62728", "#2ca02c", "#1f77b4"), strict=True)):
            vals = np.concatenate(
                [
                    subsample(a[..., c] if colour_last else a[c], MAX_HISTOGRAM_VALUES // len(flat))
                    for a in flat
                ]
            )
            lo, hi = robust_limits(vals, 0.0, 100.0)
            draw_histogram(ax, vals, (lo, hi), bins=64, colour=colour, label=name, fill=False)
        ax.legend(frameon=False, fontsize=8)
    else:
        vals = np.concatenate([subsample(a, MAX_HISTOGRAM_VALUES // len(flat)) for a in flat])
        lo, hi = robust_limits(vals, 0.0, 100.0)
        draw_histogram(ax, vals, (lo, hi), bins=64, colour=TRACE_COLOUR)
    ax.set_xlabel(unit)
    ax.set_ylabel("count")
    _style_axes(ax)
    fig.tight_layout()
    return figure_png(fig)


def sample_caption(
    sample: Mapping[str, Any], split: str, manifest: Mapping[str, Any], label_column: str | None
) -> str:
    """A short caption: split, the (pseudonymous) sample id, the window and the sample's labels."""
    sid = str(sample.get(COL_SAMPLE_ID, "?"))
    short = sid if len(sid) <= 26 else sid[:25] + "…"
    text = f"{split} · {short}"
    index, count = sample.get("window_index"), sample.get("n_windows")
    if isinstance(index, int) and isinstance(count, int) and count > 1:
        text += f" · window {index + 1}/{count}"
    if label_column and label_column in sample:
        counts = count_labels(manifest, {split: [sample[label_column]]}, label_column)
        names = sorted(counts.by_split.get(split, {}))
        if names:
            text += " · " + ", ".join(names)
        elif counts.values.get(split):
            text += f" · {label_column}={format_number(counts.values[split][0])}"
    return text


def _window_start_s(sample: Mapping[str, Any]) -> float:
    """Where a windowed sample starts in its recording, in seconds (row ``window_start_s``; else 0)."""
    value = sample.get("window_start_s")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _conf(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    return (manifest.get("canonical") or {}).get("configuration") or {}


def _channel_names(manifest: Mapping[str, Any]) -> list[str] | None:
    conf = _conf(manifest)
    for key in ("leads", "channels", "channel_names"):
        value = conf.get(key)
        if isinstance(value, list) and value:
            return [str(v) for v in value]
    return None


def _sampling_rate_hz(manifest: Mapping[str, Any], sample: Mapping[str, Any]) -> float | None:
    for source in (sample, _conf(manifest)):
        for key in ("fs_hz", "sampling_rate_hz", "sample_rate_hz", "fps"):
            value = source.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return float(value)
    return None


def _channel_mask(sample: Mapping[str, Any], channels: int) -> np.ndarray | None:
    for name in ("lead_mask", "channel_mask"):
        value = sample.get(name)
        if isinstance(value, np.ndarray) and value.shape == (channels,):
            return value.astype(bool)
    return None


def render_pictures(ds: Any, samples_per_source: int) -> str:
    """Pictures of a few samples of a dataset and their per-channel histograms (HTML).

    Reads ``samples_per_source`` samples spread over the splits by random access, pictures the
    main array (:func:`main_array_name`) as :func:`classify_array` says, and adds a histogram of
    its values per channel.
    """
    manifest = ds.manifest
    name = main_array_name(manifest)
    if name is None:
        return '<p class="muted">No array to picture.</p>'
    sizes = {s: int((manifest.get("splits") or {}).get(s, {}).get("samples", 0)) for s in ds.splits}
    picks = pick_sample_positions(sizes, samples_per_source)
    if not picks:
        return '<p class="muted">No samples to picture.</p>'
    label_column = find_label_column(manifest)
    modality, group = manifest.get("modality"), manifest.get("group")
    units = _conf(manifest).get("units")
    read: list[tuple[str, dict[str, Any]]] = [(split, ds.split(split)[pos]) for split, pos in picks]
    arrays = [np.asarray(sample[name]) for _, sample in read]
    kinds = {classify_array(a.shape, modality, group) for a in arrays}
    kind = kinds.pop() if len(kinds) == 1 else "none"
    captions = [sample_caption(s, split, manifest, label_column) for split, s in read]
    figures: list[str] = []
    masks: list[np.ndarray | None] = []
    channel_names = _channel_names(manifest)
    if kind == "timeseries":
        for (_, sample), arr, caption in zip(read, arrays, captions, strict=True):
            channels = arr.shape[0] if arr.ndim == 2 else 1
            mask = _channel_mask(sample, channels)
            masks.append(mask)
            fs_hz = _sampling_rate_hz(manifest, sample)
            start, stop = display_window(arr.shape[-1], fs_hz)
            if (start, stop) != (0, arr.shape[-1]):
                unit_t, scale = ("s", fs_hz) if fs_hz else ("samples", 1.0)
                caption += (
                    f" · {(stop - start) / scale:g} {unit_t} from {start / scale:g} {unit_t}"
                    f" of {arr.shape[-1] / scale:g} {unit_t}"
                )
            png = plot_timeseries(
                arr[..., start:stop],
                fs_hz=fs_hz,
                channel_names=channel_names,
                units=units,
                channel_mask=mask,
                title=caption,
                start_s=(start / fs_hz + _window_start_s(sample)) if fs_hz else 0.0,
            )
            figures.append(_figure(png, f"{name} of {caption}", ""))
    elif kind in ("image_grey", "image_rgb"):
        panels = [
            (caption, *to_display_image(thumbnail(_channels_last(arr, kind), 600), kind))
            for caption, arr in zip(captions, arrays, strict=True)
        ]
        panels = [(c[:38], img, cmap) for c, img, cmap in panels]
        shapes = ", ".join("×".join(map(str, a.shape)) for a in arrays)
        png = plot_image_grid(panels, columns=min(4, len(panels)), panel_px=300)
        figures.append(
            _figure(png, f"{name} thumbnails", f"{name}: {len(arrays)} samples ({shapes}, {arrays[0].dtype})")
        )
    elif kind == "volume":
        for (_, sample), arr, caption in zip(read, arrays, captions, strict=True):
            slices = middle_slices(arr)
            spacing = sample.get("spacing_mm")
            aspects = None
            if (
                isinstance(spacing, list)
                and len(spacing) == 3
                and all(isinstance(s, (int, float)) and s > 0 for s in spacing)
            ):
                sd, sh, sw = (float(s) for s in spacing)
                aspects = [sh / sw, sd / sw, sd / sh]
            panels = [(f"{plane} (middle)", *to_display_image(img, "image_grey")) for plane, img in slices]
            png = plot_image_grid(panels, columns=3, panel_px=260, aspects=aspects)
            figures.append(
                _figure(
                    png,
                    f"{name} middle slices of {caption}",
                    f"{caption} · {'×'.join(map(str, arr.shape))} {arr.dtype}",
                )
            )
    elif kind == "video":
        fps = None
        for (_, sample), arr, caption in zip(read, arrays, captions, strict=True):
            fps = _sampling_rate_hz(manifest, sample)
            frames = video_frames(arr)
            frame_kind = "image_rgb" if arr.ndim == 4 and arr.shape[-1] in (3, 4) else "image_grey"
            panels = [
                (f"frame {i}" + (f" · {i / fps:.2f} s" if fps else ""), *to_display_image(f, frame_kind))
                for i, f in frames
            ]
            png = plot_image_grid(panels, columns=len(panels), panel_px=220)
            figures.append(
                _figure(
                    png,
                    f"{name} frames of {caption}",
                    f"{caption} · {'×'.join(map(str, arr.shape))} {arr.dtype}",
                )
            )
    else:
        shapes = ", ".join("×".join(map(str, a.shape)) for a in arrays)
        return f'<p class="muted">No picture for array <code>{esc(name)}</code> of shapes {esc(shapes)}.</p>'
    hist = plot_channel_histograms(
        arrays,
        kind,
        channel_names=channel_names,
        units=units,
        masks=masks or None,
    )
    hist_html = _figure(
        hist,
        f"value histograms of {name}",
        f"values of {name} per channel, over the {len(arrays)} samples above",
    )
    return (
        f'<div class="figures">{"".join(figures)}</div>'
        f'<h3>Value histograms</h3><div class="figures">{hist_html}</div>'
    )


def _channels_last(arr: np.ndarray, kind: str) -> np.ndarray:
    """(C, H, W) colour or (1, H, W) grey as (H, W, C) / (H, W, 1), for :func:`thumbnail`."""
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        return np.moveaxis(arr, 0, -1)
    return arr


def _figure(png: bytes, alt: str, caption: str) -> str:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f"<figure>{png_img_tag(png, alt)}{cap}</figure>"


# ---------------------------------------------------------------------------------------------
# Page assembly
# ---------------------------------------------------------------------------------------------


def section_id(source: str) -> str:
    """The HTML id of a source's section: ``src-<source>`` (characters outside [A-Za-z0-9_-] → ``-``)."""
    safe = "".join(ch if ch.isalnum() or ch in "_-" else "-" for ch in source)
    return f"src-{safe}"


def render_source_section(ds: Any, *, samples_per_source: int = 3) -> tuple[str, SourceSummary]:
    """One source's section and its summary-table row.

    Args:
        ds: an opened :class:`manifests.reader.Dataset`.
        samples_per_source: how many samples to picture.
    """
    manifest = ds.manifest
    version = str(manifest.get("version", ""))
    summary = summarise_manifest(manifest, version)
    source = summary.source
    meta_bits = [
        ("modality", manifest.get("modality")),
        ("version", version),
        ("licence", manifest.get("licence")),
        ("built", manifest.get("created_at")),
    ]
    meta = " · ".join(f'<span class="muted">{k}</span> {esc(v)}' for k, v in meta_bits if v)
    try:
        labels_html = render_labels(manifest, read_label_counts(ds))
    except Exception as exc:  # a bad rows file must not hide the rest of the report
        labels_html = _error_box(f"labels could not be read: {exc}")
    try:
        pictures_html = render_pictures(ds, samples_per_source)
    except Exception as exc:
        log.warning("report: %s: pictures failed: %s", source, exc)
        pictures_html = _error_box(f"samples could not be pictured: {exc}")
    examples = read_quarantine_examples(ds.url, ds.storage_options)
    body = f"""
<section class="source" id="{section_id(source)}" data-source="{esc(source)}">
  <div class="source-head">
    <h2>{esc(source)}</h2>
    <div class="title">{esc(summary.title)}</div>
    <div class="meta">{meta}</div>
    <div class="url"><code>{esc(ds.url)}</code></div>
  </div>
  {render_counts(manifest)}
  <div class="cols">
    <div class="stack">
      <div class="card"><h3>Splits</h3>{render_splits(manifest)}</div>
      <div class="card"><h3>De-identification</h3>{render_deid(manifest)}</div>
    </div>
    <div class="stack">
      <div class="card"><h3>Label distribution</h3>{labels_html}</div>
      <div class="card"><h3>Quarantine reasons</h3>{render_quarantine(manifest, examples)}</div>
    </div>
  </div>
  <div class="card"><h3>Samples</h3>{pictures_html}</div>
  <div class="cols">
    <div class="card"><h3>Arrays</h3>{render_arrays(manifest)}</div>
    <div class="card"><h3>Throughput</h3>{render_throughput(manifest)}</div>
  </div>
  <div class="card"><details><summary>Shards ({len(manifest.get("shards") or []):,})</summary>
    {render_shards(manifest)}</details></div>
  <p class="top"><a href="#summary">↑ summary</a></p>
</section>"""
    return body, summary


def _error_box(text: str) -> str:
    return f'<div class="error">{esc(text)}</div>'


def render_error_section(built: BuiltSource, reason: str) -> str:
    """A section for a source whose dataset could not be opened, naming its URL and the reason."""
    return (
        f'<section class="source failed" id="{section_id(built.source)}" data-source="{esc(built.source)}">'
        f'<div class="source-head"><h2>{esc(built.source)}</h2><div class="url"><code>{esc(built.url)}</code></div></div>'
        f"{_error_box(reason)}</section>"
    )


def render_summary_table(summaries: Sequence[SourceSummary]) -> str:
    """The table at the top: one row per source (linking to its section) and a total row."""
    splits = ordered_splits(s for summ in summaries for s in summ.splits)
    head = "".join(f'<th class="num">{esc(s)}</th>' for s in splits)
    rows = []
    for s in summaries:
        link = f'<a href="#{section_id(s.source)}">{esc(s.source)}</a>'
        if s.error:
            rows.append(
                f'<tr class="failed" data-source="{esc(s.source)}"><td>{link}</td>'
                f'<td colspan="{6 + len(splits)}" class="error-text">{esc(s.error)}</td></tr>'
            )
            continue
        rate = f"{s.counts['items_in'] / s.shard_seconds:,.0f}" if s.shard_seconds > 0 else "–"
        q = s.counts["quarantined"]
        rows.append(
            f'<tr data-source="{esc(s.source)}"><td>{link}<div class="sub">{esc(shorten(s.title, 90))}</div></td>'
            f"<td>{esc(s.modality)}</td>"
            f'<td class="num" data-field="items_in" data-value="{s.counts["items_in"]}">{format_count(s.counts["items_in"])}</td>'
            f'<td class="num" data-field="samples_out" data-value="{s.counts["samples_out"]}">{format_count(s.counts["samples_out"])}</td>'
            f'<td class="num{" warn-text" if q else ""}" data-field="quarantined" data-value="{q}">{format_count(q)}</td>'
            + "".join(f'<td class="num">{format_count(s.splits.get(sp, 0))}</td>' for sp in splits)
            + f'<td class="num">{format_count(s.shards)}</td><td class="num">{format_bytes(s.size_bytes)}</td>'
            f'<td class="num">{rate}</td></tr>'
        )
    ok = [s for s in summaries if not s.error]
    total = {k: sum(s.counts.get(k, 0) for s in ok) for k in ("items_in", "samples_out", "quarantined")}
    rows.append(
        f'<tr class="total"><td>total ({len(ok)} sources)</td><td></td>'
        f'<td class="num">{format_count(total["items_in"])}</td><td class="num">{format_count(total["samples_out"])}</td>'
        f'<td class="num">{format_count(total["quarantined"])}</td>'
        + "".join(
            f'<td class="num">{format_count(sum(s.splits.get(sp, 0) for s in ok))}</td>' for sp in splits
        )
        + f'<td class="num">{format_count(sum(s.shards for s in ok))}</td>'
        f'<td class="num">{format_bytes(sum(s.size_bytes for s in ok))}</td><td></td></tr>'
    )
    return (
        '<table class="grid summary" id="summary-table"><thead><tr><th>source</th><th>modality</th>'
        '<th class="num">items in</th><th class="num">samples out</th><th class="num">quarantined</th>'
        f'{head}<th class="num">shards</th><th class="num">size</th><th class="num">items/s</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def render_html(
    out: str, summaries: Sequence[SourceSummary], sections: Sequence[str], generated_at: str
) -> str:
    """The whole page from the summary rows and the rendered sections (pure)."""
    ok = [s for s in summaries if not s.error]
    chips = [
        (format_count(len(ok)), "sources"),
        (format_count(sum(s.counts.get("samples_out", 0) for s in ok)), "samples"),
        (format_count(sum(s.counts.get("quarantined", 0) for s in ok)), "quarantined"),
        (format_bytes(sum(s.size_bytes for s in ok)), "on disk"),
    ]
    chip_html = "".join(f'<div class="chip"><b>{esc(v)}</b> {esc(k)}</div>' for v, k in chips)
    nav = "".join(f'<a href="#{section_id(s.source)}">{esc(s.source)}</a>' for s in summaries)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>CLIMB build report: {esc(out)}</title>
<style>{PAGE_CSS}</style>
</head>
<body data-images="" data-broken="">
<header class="page-head">
  <div class="brand">CLIMB <span>build report</span></div>
  <nav>{nav}</nav>
</header>
<main>
<section id="summary">
  <h1>Built corpus</h1>
  <p class="muted"><code>{esc(out)}</code> · generated {esc(generated_at)}</p>
  <div class="chips">{chip_html}</div>
  {render_summary_table(summaries)}
  <p class="muted small">items/s: items per shard-second (sum of shard task times). Quarantined items are
  kept out of the shards with a reason; counts always add up: items in = items published + quarantined.</p>
</section>
{"".join(sections)}
</main>
<footer>climb-etl · static report, no external resources</footer>
<script>{PAGE_SCRIPT}</script>
</body>
</html>
"""


#: On load, record the number of images and of images that failed to decode on ``<body>``.
PAGE_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, broken = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (!imgs[i].complete || imgs[i].naturalWidth === 0) broken++;
  }
  document.body.dataset.images = String(imgs.length);
  document.body.dataset.broken = String(broken);
  document.body.dataset.loaded = "1";
});
"""

PAGE_CSS = """
:root { --ink:#1f2933; --muted:#6b7785; --line:#e3e7ec; --bg:#f5f7fa; --card:#ffffff; --accent:#3b6fb6;
        --warn:#b7541a; --ok:#2f855a; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", "DejaVu Sans", sans-serif; }
code { font-family: "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 12px; }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
.page-head { position: sticky; top: 0; z-index: 5; display:flex; align-items:center; gap:24px; padding: 10px 32px;
             background:#1d3557; color:#fff; box-shadow: 0 1px 4px rgba(0,0,0,.15); }
.brand { font-weight:700; font-size:17px; letter-spacing:.5px; } .brand span { font-weight:400; opacity:.8; }
.page-head nav { display:flex; flex-wrap:wrap; gap:14px; } .page-head nav a { color:#dce6f5; font-size:13px; }
main { max-width: 1240px; margin: 0 auto; padding: 20px 32px 40px; }
h1 { font-size: 24px; margin: 8px 0 2px; } h2 { font-size: 22px; margin: 0; }
h3 { font-size: 13px; text-transform: uppercase; letter-spacing: .6px; color: var(--muted); margin: 4px 0 10px; }
.card h3 + * { margin-top: 0; } .card h3:not(:first-child) { margin-top: 18px; }
.muted { color: var(--muted); } .small { font-size: 12px; }
.chips { display:flex; gap:10px; margin: 14px 0; flex-wrap: wrap; }
.chip { background: var(--card); border:1px solid var(--line); border-radius: 999px; padding: 5px 14px; color: var(--muted); }
.chip b { color: var(--ink); font-size: 15px; }
table { border-collapse: collapse; width: 100%; }
table.grid th, table.grid td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
table.grid thead th { font-size: 12px; color: var(--muted); font-weight: 600; border-bottom: 2px solid var(--line); white-space: nowrap; }
table.grid tbody tr:hover { background: #f0f4fa; }
table.summary { background: var(--card); border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
table.summary td:first-child a { font-weight: 600; font-size: 15px; }
table.summary .sub { color: var(--muted); font-size: 12px; }
tr.total td { font-weight: 700; border-top: 2px solid var(--line); background: #fafbfc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { text-align:left; font-weight:400; color: var(--muted); padding: 4px 12px 4px 0; width: 55%; }
table.kv td { padding: 4px 0; font-variant-numeric: tabular-nums; }
table.shards td { font-size: 12px; padding: 3px 10px; }
.source { margin-top: 36px; padding-top: 8px; border-top: 3px solid #1d3557; scroll-margin-top: 56px; }
.source-head .title { font-size: 15px; margin: 2px 0; }
.source-head .meta, .source-head .url { font-size: 12px; color: var(--ink); }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; margin: 14px 0; }
.kpi { background: var(--card); border: 1px solid var(--line); border-left: 4px solid var(--accent); border-radius: 8px; padding: 10px 14px; }
.kpi.warn { border-left-color: var(--warn); }
.kpi-value { font-size: 26px; font-weight: 700; font-variant-numeric: tabular-nums; }
.kpi-label { font-size: 12px; text-transform: uppercase; letter-spacing: .5px; color: var(--muted); }
.kpi-note { font-size: 12px; color: var(--muted); }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; margin-bottom: 12px; align-items: start; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; margin-bottom: 12px; }
.cols .card { margin-bottom: 0; }
.stack { display: flex; flex-direction: column; gap: 12px; }
.bar { display:inline-block; width: 120px; height: 8px; background: #edf0f4; border-radius: 4px; margin-right: 6px; vertical-align: middle; }
.bar div { height: 100%; border-radius: 4px; }
.dot { display:inline-block; width:9px; height:9px; border-radius:50%; margin-right:6px; }
.figures { display:flex; flex-direction: column; gap: 10px; }
figure { margin: 0; } figcaption { font-size: 12px; color: var(--muted); }
img.plot { max-width: 100%; height: auto; display:block; border-radius: 4px; }
.method { font-size: 12px; color: var(--muted); margin: 0 0 8px; }
.ok { color: var(--ok); } .warn-text { color: var(--warn); } .error-text { color: #b42318; }
.error { background:#fdecea; color:#8a1c12; border:1px solid #f5c2bb; border-radius:6px; padding:10px 12px; }
td.detail { font-size: 12px; color: var(--muted); max-width: 360px; }
details summary { cursor: pointer; color: var(--accent); font-weight: 600; }
details table { margin-top: 8px; }
.top { text-align: right; font-size: 12px; }
footer { text-align:center; color: var(--muted); font-size: 12px; padding: 24px; }
"""


@dataclass
class ReportResult:
    """What :func:`write_report` wrote.

    Attributes:
        path: the HTML file.
        sources: one summary per source, in page order; ``error`` is set for a source whose
            dataset could not be opened.
    """

    path: Path
    sources: list[SourceSummary]

    @property
    def failed(self) -> list[SourceSummary]:
        return [s for s in self.sources if s.error]


def default_report_path(out: str, storage_options: Mapping[str, Any] | None = None) -> Path:
    """``<out>/report.html`` for a local ``out``; ``./report.html`` for an object-store ``out``."""
    fs, root = fsspec.core.url_to_fs(out, **dict(storage_options or {}))
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if "file" in protocols or "local" in protocols:
        return Path(root) / REPORT_FILE
    return Path(REPORT_FILE)


def write_report(
    out: str,
    dest: str | Path | None = None,
    *,
    samples_per_source: int = 3,
    storage_options: Mapping[str, Any] | None = None,
) -> ReportResult:
    """Write the report (see :func:`render_report`) and say what it holds."""
    from manifests.reader import open_dataset

    found = find_built_sources(out, storage_options)
    if not found:
        raise ReportError(f"{out}: no built dataset here (no <source>/{CURRENT_POINTER} or manifest.json)")
    path = Path(dest) if dest is not None else default_report_path(out, storage_options)
    summaries: list[SourceSummary] = []
    sections: list[str] = []
    for built in found:
        if built.error:
            summaries.append(SourceSummary(built.source, built.version, error=built.error))
            sections.append(render_error_section(built, built.error))
            continue
        try:
            ds = open_dataset(built.url, storage_options=dict(storage_options or {}) or None)
        except Exception as exc:  # one broken source must not hide the others
            reason = f"{built.url}: cannot open the dataset: {exc}"
            log.warning("report: %s", reason)
            summaries.append(SourceSummary(built.source, built.version, error=reason))
            sections.append(render_error_section(built, reason))
            continue
        section, summary = render_source_section(ds, samples_per_source=samples_per_source)
        summaries.append(summary)
        sections.append(section)
    generated = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    page = render_html(out, summaries, sections, generated)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return ReportResult(path, summaries)


def render_report(
    out: str,
    dest: str | None = None,
    *,
    samples_per_source: int = 3,
    storage_options: Mapping[str, Any] | None = None,
) -> Path:
    """Write the build report of every built source under ``out`` as one static HTML file.

    Args:
        out: the output root (``<out>/<source>/current.json`` per source), local or any fsspec
            URL, or one dataset root.
        dest: the HTML file to write, a local path. Default: ``<out>/report.html`` for a local
            ``out``, ``./report.html`` otherwise.
        samples_per_source: samples pictured per source (spread over the splits).
        storage_options: fsspec options for reading ``out``.

    Returns:
        The path of the written report (written to a temporary name, then renamed).

    Raises:
        ReportError: no built dataset under ``out``.

    A source whose dataset cannot be opened gets a section naming its URL and the reason; the
    other sources are still reported (:func:`write_report` says which failed).
    """
    result = write_report(out, dest, samples_per_source=samples_per_source, storage_options=storage_options)
    return result.path


__all__ = [
    "BuiltSource",
    "LabelCounts",
    "ReportError",
    "ReportResult",
    "SourceSummary",
    "classify_array",
    "count_labels",
    "find_built_sources",
    "find_label_column",
    "main_array_name",
    "pick_sample_positions",
    "plot_channel_histograms",
    "plot_label_distribution",
    "plot_timeseries",
    "render_report",
    "write_report",
]
