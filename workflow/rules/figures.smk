# paper_figures/: each figure/table has a producing rule and a named target rule (e.g.
# `snakemake --cores 2 fig3` rebuilds Fig. 3 alone).
FIG2_METHODS = [m for m in METHODS if parse_method(m).extractor in ("moco", "supervised")]
# Appendix A.3 (Figs. 8, 9): every extractor's same-class methods, drawn when the config
# lists an SSL extractor other than MoCo.
FIGA3_METHODS = [m for m in METHODS if parse_method(m).extractor is not None and parse_method(m).pool == "same_class"]
FIGA3 = any(parse_method(m).extractor in ("simclr", "byol", "dino") for m in METHODS)
FIGURE_FORMATS = ["pdf", "png"]


rule plot_fig3:
    input:
        support_files=[f for metric in METRICS for f in support_files(METHODS, metric)],
    output:
        figure_files=expand("paper_figures/fig3_support_cdf.{ext}", ext=FIGURE_FORMATS),
    params:
        stage="support_figure",
        methods=METHODS,
        metrics=METRICS,
        k=config["bisection"]["k"],
        code=code("plots", "metrics"),
    log:
        f"{LOGS}/figures/fig3.log",
    script:
        STAGE_SCRIPT


rule plot_fig2:
    input:
        support_files=[f for metric in METRICS for f in support_files(FIG2_METHODS, metric)],
    output:
        figure_files=expand("paper_figures/fig2_esvm_l2_moco_supervised.{ext}", ext=FIGURE_FORMATS),
    params:
        stage="support_figure",
        methods=FIG2_METHODS,
        metrics=METRICS,
        k=config["bisection"]["k"],
        code=code("plots", "metrics"),
    log:
        f"{LOGS}/figures/fig2.log",
    script:
        STAGE_SCRIPT


rule plot_figA3:
    input:
        support_files=[f for metric in METRICS for f in support_files(FIGA3_METHODS, metric)],
    output:
        figure_files=expand("paper_figures/figA3_ssl_extractors.{ext}", ext=FIGURE_FORMATS),
    params:
        stage="support_figure",
        methods=FIGA3_METHODS,
        metrics=METRICS,
        k=config["bisection"]["k"],
        colour_by="extractor",
        code=code("plots", "metrics"),
    log:
        f"{LOGS}/figures/figA3.log",
    script:
        STAGE_SCRIPT


rule make_table_auc:
    input:
        support_files=[f for metric in METRICS for f in support_files(METHODS, metric)],
    output:
        table_csv="paper_figures/table_auc.csv",
        table_tex="paper_figures/table_auc.tex",
    params:
        stage="auc_table",
        methods=METHODS,
        metrics=METRICS,
        k=config["bisection"]["k"],
        code=code("plots", "metrics"),
    log:
        f"{LOGS}/figures/table_auc.log",
    script:
        STAGE_SCRIPT


rule make_table_lds:
    input:
        lds_files=expand(f"{RESULTS}/lds/{{method}}.csv", method=METHODS),
    output:
        table_csv="paper_figures/table_lds.csv",
        table_tex="paper_figures/table_lds.tex",
    params:
        stage="lds_table",
        methods=METHODS,
        lds=config["lds"],
        models_used=[models_used(method, config) for method in METHODS],
        code=code("plots", "metrics", "budget", "methods"),
    log:
        f"{LOGS}/figures/table_lds.log",
    script:
        STAGE_SCRIPT


rule fig2:
    input:
        rules.plot_fig2.output,


rule figA3:
    input:
        rules.plot_figA3.output,


rule fig3:
    input:
        rules.plot_fig3.output,


rule table_auc:
    input:
        rules.make_table_auc.output,


rule table_lds:
    input:
        rules.make_table_lds.output,
