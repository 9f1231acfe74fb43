"""Paper figures (support CDFs) and tables (CSV + LaTeX), written atomically.

The support CDF and its AUC follow DESIGN.md section 1 (paper.md Figures 3-5): one step curve
per method over x in [0, k], censored targets counted in the denominator only, the legend
giving each method's AUC. Files go to ``paper_figures/`` (DESIGN.md section 2) through
:func:`databrittle.io.atomic_path`, so a killed job never leaves a partial figure.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: set before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from databrittle.errors import InputError  # noqa: E402
from databrittle.io import atomic_path, write_csv, write_text  # noqa: E402
from databrittle.metrics import auc, cdf  # noqa: E402

#: (support int (n_targets,), censored bool (n_targets,)) for one method.
Curve = tuple[np.ndarray, np.ndarray]

# Metadata keys matplotlib fills with the current date; cleared so reruns give equal files.
_NO_DATES = {"pdf": {"CreationDate": None}, "svg": {"Date": None}, "ps": {"CreationDate": None}}


def plot_support_cdfs(curves: Mapping[str, Curve], k: int, title: str, out_paths: Sequence[str | os.PathLike]) -> None:
    """One support-CDF panel with one step curve per method (DESIGN.md section 1).

    Args:
        curves: legend name -> (support (n_targets,), censored bool (n_targets,)).
        k: ranking length; the x axis spans [0, k].
        title: the panel title.
        out_paths: files to write (format from the suffix, e.g. .pdf and .png).
    """
    plot_support_cdf_panels({title: curves}, k, out_paths)


def plot_support_cdf_panels(panels: Mapping[str, Mapping[str, Curve]], k: int,
                            out_paths: Sequence[str | os.PathLike],
                            styles: Mapping[str, Mapping[str, object]] | None = None) -> None:
    """Support-CDF panels side by side, e.g. ``{"removal": curves, "mislabel": curves}``.

    Args:
        panels: panel title -> (legend name -> (support (n_targets,), censored (n_targets,))).
        k: ranking length; every panel's x axis spans [0, k].
        out_paths: files to write, each atomically (format from the suffix).
        styles: optional legend name -> matplotlib line keywords (e.g. linestyle, color).
    """
    if not panels:
        raise InputError("plot: no panels to draw")
    if not out_paths:
        raise InputError("plot: no output paths")
    formats = [_format_of(path) for path in out_paths]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False, sharey=True)
    try:
        for ax, (panel_title, curves) in zip(axes[0], panels.items()):
            _draw_cdf_panel(ax, curves, k, panel_title, styles or {})
        axes[0][0].set_ylabel("fraction of targets flipped")
        fig.tight_layout()
        for path, fmt in zip(out_paths, formats):
            _save(fig, path, fmt)
    finally:
        plt.close(fig)


def write_table(frame: pd.DataFrame, csv_path: str | os.PathLike, tex_path: str | os.PathLike,
                caption: str, float_format: str = "%.3f") -> None:
    """Write ``frame`` as CSV (full precision, no index) and as a LaTeX table, both atomically.

    The LaTeX file is a ``table`` environment with a ``tabular`` (``\\hline`` rules, no extra
    packages), the caption, and ``\\label{tab:<tex file stem>}``. Floats are formatted with
    ``float_format``; missing values print as ``--``; text is LaTeX-escaped.
    """
    write_csv(csv_path, frame)
    write_text(tex_path, latex_table(frame, caption, label=f"tab:{Path(tex_path).stem}", float_format=float_format))


def latex_table(frame: pd.DataFrame, caption: str, label: str, float_format: str = "%.3f") -> str:
    """The LaTeX source of :func:`write_table`'s ``.tex`` file."""
    align = "".join("r" if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
                    else "l" for c in frame.columns)
    header = " & ".join(_latex_escape(str(c)) for c in frame.columns) + r" \\"
    body = [" & ".join(_latex_cell(v, float_format) for v in row) + r" \\"
            for row in frame.itertuples(index=False, name=None)]
    lines = [r"\begin{table}[t]", r"\centering", f"\\caption{{{_latex_escape(caption)}}}", f"\\label{{{label}}}",
             f"\\begin{{tabular}}{{{align}}}", r"\hline", header, r"\hline", *body, r"\hline",
             r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _draw_cdf_panel(ax: plt.Axes, curves: Mapping[str, Curve], k: int, title: str,
                    styles: Mapping[str, Mapping[str, object]]) -> None:
    """Draw the step CDF of each method over [0, k] with 'name (AUC=0.123)' labels."""
    for name, (support, censored) in curves.items():
        area = auc(support, censored, k)  # validates the arrays
        support = np.asarray(support, dtype=np.float64)
        censored = np.asarray(censored, dtype=np.bool_)
        xs = np.unique(np.concatenate([[0.0, float(k)], np.clip(support[~censored], 0, k)]))
        ax.step(xs, cdf(support, censored, xs), where="post", label=f"{name} (AUC={area:.3f})",
                **styles.get(name, {}))
    ax.set_xlim(0, k)
    ax.set_ylim(0, 1)
    ax.set_xlabel("support size")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(loc="best", fontsize="small", framealpha=0.8)  # the corner the curves cover least


def _format_of(path: str | os.PathLike) -> str:
    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in FigureCanvasBase.get_supported_filetypes():
        raise InputError(f"{path}: unsupported figure format {fmt!r}")
    return fmt


def _save(fig: plt.Figure, path: str | os.PathLike, fmt: str) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, metadata=_NO_DATES.get(fmt), bbox_inches="tight")


def _latex_cell(value: object, float_format: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
        return "--"
    if isinstance(value, (float, np.floating)):
        return float_format % value
    return _latex_escape(str(value))


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
