# Thin adapter: one call of the databrittle.stages function named by params.stage.
from databrittle.workflow_adapter import run_stage

run_stage(snakemake)  # noqa: F821 (injected by Snakemake)
