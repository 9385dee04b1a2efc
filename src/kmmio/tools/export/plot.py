"""A log as a picture (``kmmio plot``): accesses over time per register, and values.

* The raster (top): one row per register (with a map) or address, time across; each row
  has its writes (red, upper half) and reads (blue, lower half) counted in ``COLUMNS``
  time columns, darker for more.  Streaming: the columns start 1 µs wide and double
  (merging neighbours) whenever the log outlasts them, so the log is read once, in
  memory bounded by ``MAX_ROWS`` by ``COLUMNS``.  Past ``MAX_ROWS`` distinct rows, the
  rest share one row, and the figure says so.
* One step plot per register asked for (``--registers``): its value over time, the value
  each access left (a register keeps the bits a narrower access did not reach, see
  :mod:`kmmio.tools.export.names`), one point per change only.  Past ``MAX_CHANGES``
  changes, every other one is dropped (repeatedly), and the plot's title says how many
  are shown.

Time is the log's clock in seconds.  Drawn with matplotlib's Agg backend, to PNG or SVG
(from the output's extension).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import IO, Any

from kmmio.tools.export.names import Namer, Values, Var, distinct, sort_vars
from kmmio.tools.extras import need
from kmmio.tools.scan import Batch, Progress, scan

#: Time columns of the raster (even: they merge in pairs).
COLUMNS = 1024
#: Rows of the raster before the rest share one.
MAX_ROWS = 64
#: Value changes kept per register plotted.
MAX_CHANGES = 20_000
#: The raster's colours.
WRITE_COLOR = (0.8, 0.1, 0.1)
READ_COLOR = (0.1, 0.3, 0.8)
#: The output formats, by extension.
FORMATS = (".png", ".svg")


class Raster:
    """Access counts per (kind, row, time column), the columns doubling as time goes."""

    def __init__(self, np: Any, columns: int = COLUMNS, max_rows: int = MAX_ROWS) -> None:
        self.np = np
        self.columns = columns
        self.max_rows = max_rows
        self.counts = np.zeros((2, max_rows + 1, columns), dtype=np.int64)  # last row: the rest
        self.rows: dict[Var, int] = {}
        self.others: set[Var] = set()
        self.others_capped = False
        self.t0: int | None = None
        self.step = 1  # µs per column
        self.last = 0  # the latest access, µs after t0
        self.accesses = 0

    def row(self, var: Var) -> int:
        r = self.rows.get(var)
        if r is None:
            if len(self.rows) < self.max_rows:
                r = self.rows[var] = len(self.rows)
            else:
                if len(self.others) < 100_000:
                    self.others.add(var)
                else:
                    self.others_capped = True
                r = self.max_rows
        return r

    def add(self, kind: Any, rowidx: Any, ts: Any, new: bool = True) -> None:
        """Count accesses: numpy arrays of kinds (0/1), rows and timestamps (µs);
        ``new``: false for an access counted already in another row."""
        np = self.np
        if not len(ts):
            return
        if self.t0 is None:
            self.t0 = int(ts[0])
        rel = ts.astype(np.int64) - self.t0
        np.maximum(rel, 0, out=rel)  # a timestamp before the first one: column 0
        last = int(rel.max())
        self.last = max(self.last, last)
        while last // self.step >= self.columns:
            half = self.counts.reshape(2, self.max_rows + 1, self.columns // 2, 2).sum(axis=3)
            self.counts[:] = 0
            self.counts[:, :, : self.columns // 2] = half
            self.step *= 2
        col = rel // self.step
        flat = (kind.astype(np.int64) * (self.max_rows + 1) + rowidx) * self.columns + col
        self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)
        if new:
            self.accesses += len(ts)


@dataclass
class Series:
    """The value changes of one register plotted, thinned past ``cap``."""

    var: Var
    cap: int = MAX_CHANGES
    times: list[int] = field(default_factory=list)
    values: list[int] = field(default_factory=list)
    changes: int = 0
    stride: int = 1

    def add(self, ts: int, value: int) -> None:
        self.changes += 1
        if (self.changes - 1) % self.stride:
            return
        self.times.append(ts)
        self.values.append(value)
        if len(self.times) >= self.cap:
            self.times = self.times[::2]
            self.values = self.values[::2]
            self.stride *= 2

    @property
    def thinned(self) -> bool:
        return self.stride > 1


class Plot:
    """Reads a log's batches into a :class:`Raster` and the asked-for :class:`Series`."""

    def __init__(
        self,
        namer: Namer,
        selected: list[Var],
        columns: int = COLUMNS,
        max_rows: int = MAX_ROWS,
        max_changes: int = MAX_CHANGES,
    ) -> None:
        self.np = need("numpy", "plot")
        self.namer = namer
        self.raster = Raster(self.np, columns, max_rows)
        self.series = {v: Series(v, max_changes) for v in selected}
        self.values = Values()

    def batch(self, b: Batch) -> None:
        np = self.np
        kind = np.frombuffer(b.kind, dtype=np.uint8)
        phys = np.frombuffer(b.phys, dtype=np.uint64)
        width = np.frombuffer(b.width, dtype=np.uint8)
        ts = np.frombuffer(b.ts, dtype=np.uint64)
        keys, inv = distinct(np, kind, phys, width)
        first = np.empty(len(keys), dtype=np.int64)
        watched = np.zeros(len(keys), dtype=bool)
        extra: list[tuple[int, list[int]]] = []
        for j, key in enumerate(keys):
            slots = self.namer.slots(*key)
            rws = [self.raster.row(s.var) for s in slots]
            first[j] = rws[0]
            if len(rws) > 1:
                extra.append((j, rws[1:]))
            watched[j] = any(s.var in self.series for s in slots)
        self.raster.add(kind, first[inv], ts)
        for j, more in extra:  # accesses that touched several registers: count in each row
            sel = inv == j
            for r in more:
                self.raster.add(kind[sel], np.full(int(sel.sum()), r, dtype=np.int64), ts[sel], new=False)
        if self.series and watched.any():
            self._follow(b, np.nonzero(watched[inv])[0], kind, phys, width, ts)

    def _follow(self, b: Batch, picked: Any, kind: Any, phys: Any, width: Any, ts: Any) -> None:
        """Update the values at the rows ``picked`` (those that touch a register plotted)."""
        np = self.np
        value = np.frombuffer(b.value, dtype=np.uint64)
        cols = [a[picked].tolist() for a in (kind, width, phys, value, ts)]
        wide = b.wide
        for i, k, w, p, v, t in zip(picked.tolist(), *cols, strict=True):
            if wide and i in wide:
                v = wide[i]
            for var, new, changed in self.values.apply(self.namer.slots(k, p, w), v):
                if changed and var in self.series:
                    self.series[var].add(t, new)

    def read(self, stream: IO[bytes], progress: Progress | None = None) -> None:
        for item in scan(stream, progress=progress):
            if isinstance(item, Batch):
                self.batch(item)

    def default_size(self) -> tuple[float, float]:
        """Inches: 12 wide; high enough for the raster's rows and the plots."""
        nrows = len(self.raster.rows) + (1 if self.raster.others else 0)
        return 12.0, round(2.5 + 0.22 * max(nrows, 4) + 2.2 * len(self.series), 2)

    def draw(self, out: IO[bytes], fmt: str, size: tuple[float, float], dpi: float, title: str) -> None:
        """Draw the figure to ``out`` as ``fmt`` (``png`` or ``svg``)."""
        self.figure(size, dpi, title).savefig(out, format=fmt, dpi=dpi)

    def figure(self, size: tuple[float, float], dpi: float, title: str) -> Any:
        """The figure (a ``matplotlib.figure.Figure``, ``size`` inches at ``dpi``)."""
        matplotlib = need("matplotlib", "plot")
        matplotlib.use("Agg", force=True)
        figure_mod = need("matplotlib.figure", "plot")
        patches = need("matplotlib.patches", "plot")
        np = self.np
        fig = figure_mod.Figure(figsize=size, dpi=dpi, layout="constrained")
        n = len(self.series)
        axes = fig.subplots(1 + n, 1, sharex=True, squeeze=False, height_ratios=[2.0] + [1.0] * n)[:, 0]
        ras = self.raster
        order = sort_vars(ras.rows)
        ax = axes[0]
        ax.set_title(f"{title}: {ras.accesses:,} accesses", loc="left", fontsize="medium")
        if ras.t0 is None:
            ax.text(0.5, 0.5, "no accesses", ha="center", va="center", transform=ax.transAxes)
            ax.set_yticks([])
        else:
            labels = [v.name for v in order]
            index = [ras.rows[v] for v in order]
            if ras.others:
                more = f"{len(ras.others):,}{'+' if ras.others_capped else ''}"
                labels.append(f"({more} more)")
                index.append(ras.max_rows)
            img = np.ones((2 * len(index), ras.columns, 4))
            for pos, r in enumerate(index):
                for kind, line, color in ((1, 2 * pos, WRITE_COLOR), (0, 2 * pos + 1, READ_COLOR)):
                    c = ras.counts[kind, r].astype(float)
                    alpha = np.where(c > 0, 0.35 + 0.65 * np.log1p(c) / max(math.log1p(c.max()), 1e-9), 0.0)
                    img[line, :, :3] = color
                    img[line, :, 3] = alpha
            t0 = ras.t0 / 1e6
            t1 = (ras.t0 + ras.columns * ras.step) / 1e6
            ax.imshow(img, aspect="auto", interpolation="nearest", extent=(t0, t1, len(index), 0))
            ax.set_xlim(t0, (ras.t0 + max(ras.last, 1)) / 1e6)
            ax.set_yticks([i + 0.5 for i in range(len(index))], labels, fontsize="small")
            ax.set_ylim(len(index), 0)
            handles = [
                patches.Patch(color=color, label=label)
                for kind, label, color in ((1, "write", WRITE_COLOR), (0, "read", READ_COLOR))
                if ras.counts[kind].any()
            ]
            ax.legend(handles=handles, loc="upper right", fontsize="small")
            if ras.others:
                ax.text(0.0, -0.02, f"only {ras.max_rows} rows are drawn; the others share the last one",
                        transform=ax.transAxes, fontsize="x-small", va="top")  # fmt: skip
        for ax, s in zip(axes[1:], self.series.values(), strict=True):
            note = f" (thinned: {len(s.times):,} of {s.changes:,} changes shown)" if s.thinned else ""
            ax.set_title(f"{s.var.name}{note}", loc="left", fontsize="small")
            if not s.times:
                ax.text(0.5, 0.5, "not accessed", ha="center", va="center", transform=ax.transAxes)
                continue
            t = [x / 1e6 for x in s.times]
            v = [float(x) for x in s.values]
            end = (ras.t0 + ras.last) / 1e6 if ras.t0 is not None else t[-1]
            ax.step([*t, max(end, t[-1])], [*v, v[-1]], where="post", linewidth=1.0)
            ax.plot(t, v, ".", markersize=3)
            ax.yaxis.set_major_formatter(_hex_formatter())
        axes[-1].set_xlabel("time (s, the log's clock)")
        axes[-1].ticklabel_format(axis="x", useOffset=False, style="plain")
        return fig


def _hex_formatter() -> Any:
    ticker = need("matplotlib.ticker", "plot")
    return ticker.FuncFormatter(lambda x, _pos: f"{int(x):#x}" if x >= 0 and x == int(x) else f"{x:g}")
