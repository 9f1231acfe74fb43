"""The whole DAG on the tiny config (config/test.yaml), through the real Snakemake CLI.

One run is killed in the middle of bisection and restarted: it must finish without
rerunning the step jobs that had finished, after which `snakemake -n` has nothing to do.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(workdir: Path, *args: str, config: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
    command = [*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir), "--cores", "2",
               *args, "--configfile", str(config or ROOT / "config" / "test.yaml")]
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def start(workdir: Path) -> subprocess.Popen:
    command = [*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir), "--cores", "2",
               "all", "--configfile", str(ROOT / "config" / "test.yaml")]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def prepare(workdir: Path) -> None:
    # configfile: "config/config.yaml" is resolved against the working directory
    shutil.copytree(ROOT / "config", workdir / "config", symlinks=False)


def step_files(workdir: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("step*.json")}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    prepare(workdir)
    started = time.monotonic()
    process = start(workdir)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if any(p.name == "step1.json" for p in step_files(workdir)):
            break
        time.sleep(0.5)
    assert process.poll() is None, "the run ended before bisection step 1 could be interrupted"
    os.killpg(process.pid, signal.SIGKILL)  # a hard kill: Snakemake gets no chance to clean up
    process.wait()
    before = step_files(workdir)
    assert before, "no step file was written before the kill"
    unlock = snakemake(workdir, "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    plan = snakemake(workdir, "-n", "all")
    interrupted = interrupted_outputs(plan.stdout + plan.stderr)
    resumed = snakemake(workdir, "all")
    elapsed = time.monotonic() - started
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    return workdir, before, interrupted, elapsed


def interrupted_outputs(dry_run: str) -> set[str]:
    """Outputs of the jobs Snakemake will rerun because the kill interrupted them."""
    outputs: set[str] = set()
    for block in re.split(r"^(?:local)?rule \S+:$", dry_run, flags=re.MULTILINE):
        output = re.search(r"^\s*output: (.*)$", block, re.MULTILINE)
        reason = re.search(r"^\s*reason: (.*)$", block, re.MULTILINE)
        # with rerun-incomplete (profiles/default) Snakemake 9 reports them as "Forced execution"
        if output and reason and re.search("Incomplete output files|Forced execution", reason.group(1)):
            outputs.update(name.strip() for name in output.group(1).split(","))
    return outputs


def test_whole_dag_runs_within_three_minutes(finished_run):
    workdir, _, _, elapsed = finished_run
    print(f"tiny DAG: {elapsed:.0f} s including the kill and the restart")
    assert elapsed < 180


def test_restart_does_not_rerun_finished_step_jobs(finished_run):
    """Step jobs that finished keep their files; only the jobs the kill interrupted rerun."""
    workdir, before, interrupted, _ = finished_run
    after = step_files(workdir)
    kept = {p: m for p, m in before.items() if str(p.relative_to(workdir)) not in interrupted}
    assert len(kept) >= len(before) - 2 * 2, "more jobs interrupted than can run at once on 2 cores"
    assert kept, "every step file written before the kill was declared interrupted"
    for path, mtime in kept.items():
        assert after[path] == mtime, f"{path} was rewritten on restart (interrupted: {sorted(interrupted)})"
    assert len(after) > len(before)


def test_nothing_to_do_after_a_complete_run(finished_run):
    workdir = finished_run[0]
    dry = snakemake(workdir, "-n", "all")
    assert dry.returncode == 0
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_outputs_hold_real_numbers(finished_run):
    workdir = finished_run[0]
    figures = workdir / "paper_figures"
    for name in ("fig2_esvm_l2_moco_supervised", "fig3_support_cdf"):
        for ext in ("pdf", "png"):
            assert (figures / f"{name}.{ext}").stat().st_size > 1000
    auc = pd.read_csv(figures / "table_auc.csv")
    assert set(auc["metric"]) == {"removal", "mislabel"}
    assert set(auc["method"]) == {"esvm-moco", "cosine-supervised-allclass", "random"}
    assert auc["auc"].between(0, 1).all()
    lds = pd.read_csv(figures / "table_lds.csv")
    assert len(lds) == 3 and (lds["targets"] == 4).all()
    support = pd.read_csv(workdir / "results/digits/support/removal/mlp/esvm-moco.csv")
    assert list(support.columns) == ["target", "support", "censored", "steps_run", "models_trained"]
    targets = pd.read_csv(workdir / "results/digits/targets.csv")
    assert sorted(support["target"]) == sorted(targets["target"])
    assert (support["models_trained"] <= 2).all()  #  (1 + budget) x n_test models at most
    assert not list(workdir.rglob(".*.tmp*")), "temporary files left behind"


@pytest.mark.parametrize("old, new, message", [
    ("  budget: 1", "  budjet: 1", "config key 'bisection.budjet': unknown key"),
    ("  k: 16", "  k: 500", "config key 'bisection.k': 500 is larger than every same-class candidate pool"),
])
def test_bad_config_is_named_before_any_training(tmp_path, old, new, message):
    """A misspelt key fails before any job; k > the smallest pool fails right after the data job."""
    prepare(tmp_path)
    config = tmp_path / "config" / "test.yaml"
    config.write_text(config.read_text().replace(old, new))
    result = snakemake(tmp_path, "all", config=config)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    trained = [p for p in tmp_path.rglob("results/*/*/*") if p.suffix in (".pt", ".npy")]
    assert trained == []


def test_every_ssl_extractor_runs_through_the_dag_to_its_rankings(tmp_path):
    """Appendix A.3's extractors (SimCLR, BYOL, DINO) through the real DAG on the tiny config:
    one SSL job each (ssl/{method}.pt), their features, and the rankings of a method on each."""
    import numpy as np

    prepare(tmp_path)
    config = tmp_path / "config" / "test.yaml"
    methods = ["l2-simclr", "esvm-byol", "cosine-dino-allclass"]
    text = re.sub(r"(?m)^methods: .*$", f"methods: [{', '.join(methods)}]", config.read_text())
    config.write_text(text)
    targets = [f"results/digits/rankings/{m}.npy" for m in methods]
    result = snakemake(tmp_path, *targets, config=config, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    results = tmp_path / "results" / "digits"
    assert sorted(p.name for p in (results / "ssl").glob("*.pt")) == ["byol.pt", "dino.pt", "simclr.pt"]
    for method in methods:
        rankings = np.load(results / "rankings" / f"{method}.npy")
        assert rankings.shape == (4, 16) and len(set(rankings[0])) == 16
    labels = np.load(results / "data" / "train.npz")["labels"]
    target_classes = pd.read_csv(results / "targets.csv")["label"].to_numpy()
    same_class = np.load(results / "rankings" / "esvm-byol.npy")
    assert (labels[same_class] == target_classes[:, None]).all()
