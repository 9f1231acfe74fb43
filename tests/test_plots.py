"""Figures and tables are written completely, atomically and in the asked formats."""

from __future__ import annotations

import numpy as np
import pandas as pd

from databrittle.plots import plot_support_cdf_panels, plot_support_cdfs, write_table

CURVES = {
    "ours": (np.array([2, 5, 10, -1]), np.array([False, False, False, True])),
    "random": (np.array([8, -1, -1, 9]), np.array([False, True, True, False])),
}


def _check_figures(folder, names):
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)  # no leftover temp files
    for name in names:
        data = (folder / name).read_bytes()
        assert len(data) > 0
        if name.endswith(".png"):
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
        if name.endswith(".pdf"):
            assert data[:5] == b"%PDF-"


def test_plot_support_cdfs(tmp_path):
    out = tmp_path / "figs"
    plot_support_cdfs(CURVES, k=10, title="removal", out_paths=[str(out / "fig3.pdf"), str(out / "fig3.png")])
    _check_figures(out, ["fig3.pdf", "fig3.png"])


def test_plot_panels_deterministic(tmp_path):
    paths = [tmp_path / "fig4.pdf", tmp_path / "fig4.png"]
    plot_support_cdf_panels({"removal": CURVES, "mislabel": CURVES}, 10, paths)
    first = [p.read_bytes() for p in paths]
    plot_support_cdf_panels({"removal": CURVES, "mislabel": CURVES}, 10, paths)
    _check_figures(tmp_path, ["fig4.pdf", "fig4.png"])
    assert [p.read_bytes() for p in paths] == first


def test_write_table(tmp_path):
    frame = pd.DataFrame({"method": ["ours", "TRAK_v2"], "AUC": [0.31249, 0.35549], "n_models": [1, 100]})
    write_table(frame, tmp_path / "table1.csv", tmp_path / "table1.tex", caption="LDS & AUC")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table1.csv", "table1.tex"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "table1.csv"), frame)
    tex = (tmp_path / "table1.tex").read_text()
    assert r"\begin{tabular}{lrr}" in tex and r"\end{tabular}" in tex
    assert r"ours & 0.312 & 1 \\" in tex
    assert r"TRAK\_v2 & 0.355 & 100 \\" in tex
    assert r"\caption{LDS \& AUC}" in tex and r"\label{tab:table1}" in tex


def test_method_styles_tell_extractors_apart_in_the_appendix_figure():
    from databrittle.stages import method_styles

    methods = ["esvm-moco", "l2-moco", "esvm-byol", "l2-dino", "esvm-supervised", "cosine-simclr-allclass"]
    by_similarity = method_styles(methods)
    assert by_similarity["esvm-moco"] == by_similarity["esvm-byol"]  # Figs. 2/3: colour = similarity
    assert by_similarity["esvm-supervised"]["linestyle"] == "--"
    by_extractor = method_styles(methods, colour_by="extractor")
    styles = {tuple(sorted(style.items())) for style in by_extractor.values()}
    assert len(styles) == len(methods)  # every curve distinguishable
    assert by_extractor["esvm-moco"]["color"] == by_extractor["l2-moco"]["color"]
    assert by_extractor["esvm-moco"]["linestyle"] != by_extractor["l2-moco"]["linestyle"]
    assert by_extractor["cosine-simclr-allclass"]["linestyle"] == ":"
