"""How long Snakemake takes to build the paper-scale DAG (issue 5: at most 30 s for CIFAR-10).

    python benchmarks/dag_scale.py [--configs cifar10 imagenet config] [--repeats 2]

For each config it runs, in a scratch working directory, exactly what a cluster user types
first:

    snakemake --profile slurm -n all --configfile config/<name>.yaml
    (ImageNet: --profile slurm --profile profiles/slurm-imagenet)

after putting there what a dry run cannot do without: the `data` checkpoint's outputs (so
that the whole DAG behind the checkpoint is built, every bisection step of every target,
method and metric included, as on a cluster once the data job has run; the sidecar holds the
dataset's real split sizes and class counts) and empty stand-ins for the files a user
supplies (the public datamodels, a pretrained checkpoint). It reports the wall time of the
whole command (Python start, config validation, DAG build, job listing), the number of jobs,
and their ratio to the 30-s goal; the default digits config in the same run is the small-DAG
baseline (seconds per job).

The same helpers serve tests/test_slurm.py (the CIFAR-10 dry run asks for GPUs on the rules
that train networks only).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
GOAL_SECONDS = 30.0  # issue 5

# Per-class training counts and image/test shapes of each dataset's `data` checkpoint sidecar.
SPLITS = {
    "cifar10": {"train_counts": [5000] * 10, "image": [32, 32, 3], "test": 10000},
    # ILSVRC-2012: 732 to 1,300 training images per class, 1,281,167 in all (a stand-in with its
    # smallest class and total); stored up to 400 px
    # (config data.beton). A 732-image class makes the data check face k = 1000 as it will.
    "imagenet": {"train_counts": [732] + [1282] * 716 + [1281] * 283, "image": [400, 400, 3], "test": 50000},
    "digits": {"train_counts": [139] + [144] * 7 + [145] * 2, "image": [8, 8, 1], "test": 360},
}
DATA_OUTPUTS = ("train.beton", "test.beton", "train.npz", "test.npz", "split.csv")


def dry_run_jobs(output: str) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(rule, wildcards, resources) of every job a `snakemake -n` output lists."""
    jobs = []
    for match in re.finditer(r"^(?:rule|checkpoint|localrule) (\S+):\n((?:[ \t]+\S.*\n?)*)", output, re.MULTILINE):
        body = match.group(2)
        fields = {}
        for name in ("wildcards", "resources"):
            line = re.search(rf"^\s*{name}: (.*)$", body, re.MULTILINE)
            fields[name] = dict(item.split("=", 1) for item in line.group(1).split(", ")) if line else {}
        jobs.append((match.group(1), fields["wildcards"], fields["resources"]))
    return jobs


def prepare_workdir(workdir: Path, config_name: str) -> Path:
    """A working directory whose `data` checkpoint is done and whose user files exist; returns
    the config path (relative to ``workdir``)."""
    shutil.copytree(ROOT / "config", workdir / "config", dirs_exist_ok=True)
    config_path = Path("config") / f"{config_name}.yaml"
    config = yaml.safe_load((workdir / config_path).read_text())
    dataset = config["dataset"]
    data_dir = workdir / "results" / dataset / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in DATA_OUTPUTS:
        (data_dir / name).touch()
    split = SPLITS[dataset]
    counts = split["train_counts"]
    sidecar = {"shapes": {"train": [sum(counts), *split["image"]], "test": [split["test"], *split["image"]]},
               "class_counts": {"train": {str(c): n for c, n in enumerate(counts)}}}
    (data_dir / "data.json").write_text(json.dumps(sidecar))
    for path in user_files(config):
        (workdir / path).parent.mkdir(parents=True, exist_ok=True)
        (workdir / path).touch()
    return config_path


def user_files(config: dict) -> list[str]:
    """Files the config names that a user supplies (public datamodels, pretrained checkpoints)."""
    files = [path for key, path in config["datamodels"].get("public", {}).items() if key != "sha256"]
    for section in config["ssl"].values():
        if isinstance(section, dict) and "pretrained" in section:
            files.append(section["pretrained"]["path"])
    return files


def profiles_for(config_name: str) -> list[Path]:
    """The SLURM profiles a config runs with: profiles/slurm, plus profiles/slurm-imagenet for ImageNet."""
    return [ROOT / "slurm", *([ROOT / "profiles" / "slurm-imagenet"] if config_name == "imagenet" else [])]


def dry_run(workdir: Path, config_path: Path, gpu_style: str = "gpu", timeout: float = 600) \
        -> tuple[float, subprocess.CompletedProcess]:
    """`snakemake --profile slurm [--profile profiles/slurm-imagenet] -n all --configfile CONFIG`
    in ``workdir``: (seconds, result)."""
    env = {**os.environ, "DATABRITTLE_SLURM_GPU": gpu_style}
    profiles = [arg for profile in profiles_for(Path(config_path).stem) for arg in ("--profile", str(profile))]
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
               *profiles, "-n", "all", "--configfile", str(workdir / config_path)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    return time.perf_counter() - started, result


def measure(config_name: str, repeats: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"dag-{config_name}-") as scratch:
        workdir = Path(scratch)
        config_path = prepare_workdir(workdir, config_name)
        times, jobs = [], []
        for _ in range(repeats):
            seconds, result = dry_run(workdir, config_path)
            if result.returncode != 0:
                raise SystemExit(f"{config_name}: snakemake -n failed:\n{result.stderr[-3000:]}")
            times.append(seconds)
            jobs = dry_run_jobs(result.stdout + result.stderr)
    return {"config": config_name, "seconds": min(times), "all_seconds": times, "jobs": len(jobs),
            "rules": Counter(rule for rule, _, _ in jobs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["config", "cifar10", "imagenet"])
    parser.add_argument("--repeats", type=int, default=2, help="dry runs per config; the fastest is reported")
    args = parser.parse_args()
    rows = [measure(name, args.repeats) for name in args.configs]
    baseline = next((row for row in rows if row["config"] == "config"), None)
    print(f"{'config':10} {'jobs':>6} {'seconds':>8} {'ms/job':>7} {'/ 30 s':>7}  runs")
    for row in rows:
        per_job = 1000 * row["seconds"] / max(row["jobs"], 1)
        runs = ", ".join(f"{s:.1f}" for s in row["all_seconds"])
        print(f"{row['config']:10} {row['jobs']:6d} {row['seconds']:8.1f} {per_job:7.1f} "
              f"{row['seconds'] / GOAL_SECONDS:7.2f}  {runs}")
    for row in rows:
        top = ", ".join(f"{rule} {n}" for rule, n in row["rules"].most_common(6))
        print(f"{row['config']}: {top}")
    if baseline is not None:
        for row in rows:
            if row is not baseline:
                print(f"{row['config']}: {row['jobs'] / baseline['jobs']:.1f}x the jobs of the default config in "
                      f"{row['seconds'] / baseline['seconds']:.2f}x its time")


if __name__ == "__main__":
    main()
