# databrittle: reproduce "Data brittleness estimation with self-supervised features" end to end.
#   snakemake --cores 2 all                    # default: scikit-learn digits on CPU
#   snakemake --cores 2 all --configfile config/test.yaml  # the tiny test config
from snakemake.utils import min_version

min_version("8.20")


# The embedded default, unless a complete config is given with --configfile (never merged
# over the default: a key missing from it must be an error, not a silent digits value).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


wildcard_constraints:
    metric="|".join(METRICS),
    method="|".join(METHODS),
    extractor="|".join(EXTRACTOR_NAMES),
    arch="[a-z0-9_]+",
    step=r"\d+",


include: "workflow/rules/data.smk"
include: "workflow/rules/extractors.smk"
include: "workflow/rules/reference.smk"
include: "workflow/rules/rankings.smk"
include: "workflow/rules/bisect.smk"
include: "workflow/rules/lds.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        rules.fig2.input,
        rules.fig3.input,
        rules.table_auc.input,
        rules.table_lds.input if config["lds"].get("enabled", True) else [],
        rules.figA3.input if FIGA3 else [],
