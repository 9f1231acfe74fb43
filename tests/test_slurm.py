"""The SLURM profile (profiles/slurm, `snakemake --profile slurm`) through a real SLURM.

A dry run of the default DAG checks which jobs ask for a GPU in each request style. Then
scripts/local_slurm.sh starts a one-node SLURM on this machine (installing slurm-wlm and munge
with apt-get when absent) and a small target of the tiny config (one method, one metric, two
targets, every stage from the data to the support CSV) runs through it with `--profile slurm`
plus a second profile that changes only site values. SLURM's own job records then show that
every job went through sbatch, that the rules that train networks asked for a GPU, in the
plugin's --gpus style and in the --gres style, and that the other rules did not.

Only a machine where that is impossible (not root, or no apt-get to install SLURM) skips the
SLURM part, with the reason in pytest's summary; CI machines run it.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from dag_scale import dry_run, dry_run_jobs, prepare_workdir  # noqa: E402
SCRIPT = ROOT / "scripts" / "local_slurm.sh"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
SKIP_STATUS = 77  # local_slurm.sh: this machine cannot run a test cluster

# Rules that train networks; `rankings` only for the attribution baselines.
GPU_RULES = re.compile(r"ssl|supervised_extractor|features|reference|lds_ground_truth|bisect_shard\d+")
TRAINING_BASELINES = {"trak", "datamodels", "gradcos"}
GPU_KEYS = {"gpu", "gpu_model", "gres"}

# What a site changes (tests/test_slurm.py changes nothing else of profiles/slurm):
# partition, account, job status command and polling intervals.
SITE_RESOURCES = {"slurm_partition", "slurm_account"}
SITE_OPTIONS = {"slurm-status-command", "slurm-init-seconds-before-status-checks", "seconds-between-status-checks"}


def trains_networks(rule: str, wildcards: dict[str, str], public_datamodels: bool = False) -> bool:
    """Whether a job trains networks; a baseline's ranking does (trak-N, datamodels-N too),
    except datamodels from the public release, which reads files only."""
    if rule == "rankings":
        base = wildcards["method"].split("-")[0]
        return base in TRAINING_BASELINES and not (base == "datamodels" and public_datamodels)
    return bool(GPU_RULES.fullmatch(rule))


@pytest.mark.parametrize("style, expected", [
    (None, {"gpu": "1"}),                               # default: the plugin's --gpus=1
    ("gres", {"gres": "gpu:1"}),                        # --gres=gpu:1
    ("gres:a100", {"gres": "gpu:a100:1"}),
    ("gpu:h100", {"gpu": "1", "gpu_model": "h100"}),    # --gpus=h100:1
    ("none", {}),                                       # a CPU-only cluster
])
def test_profile_requests_a_gpu_for_the_rules_that_train_networks_only(tmp_path, style, expected):
    """The default DAG under the SLURM profile: every job of a rule that trains networks (each
    bisection shard rule included) asks for one GPU in the chosen style; the others ask for none."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    env = {**os.environ, "DATABRITTLE_SLURM_GPU": style or ""}
    result = subprocess.run([*SNAKEMAKE, "-n", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                             "--profile", str(ROOT / "slurm"), "all"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = dry_run_jobs(result.stdout + result.stderr)
    rules = {rule for rule, _, _ in jobs}
    assert {"ssl", "supervised_extractor", "reference", "lds_ground_truth", "bisect_shard0", "rankings",
            "features", "support"} <= rules
    assert {w["method"] for rule, w, _ in jobs if rule == "rankings"} >= TRAINING_BASELINES | {"esvm-moco", "random"}
    for rule, wildcards, resources in jobs:
        requested = {key: value for key, value in resources.items() if key in GPU_KEYS}
        wanted = expected if trains_networks(rule, wildcards) else {}
        assert requested == wanted, f"{rule} {wildcards}: {requested}"
        assert resources["slurm_partition"] == "" and resources["runtime"]  # profile defaults reach every job


def test_unknown_gpu_style_is_a_one_line_error(tmp_path):
    shutil.copytree(ROOT / "config", tmp_path / "config")
    result = subprocess.run([*SNAKEMAKE, "-n", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                             "--profile", str(ROOT / "slurm"), "all"],
                            capture_output=True, text=True, env={**os.environ, "DATABRITTLE_SLURM_GPU": "gpus=1"},
                            timeout=120)
    assert result.returncode != 0
    assert "DATABRITTLE_SLURM_GPU='gpus=1': expected gpu, gpu:<model>, gres, gres:<type> or none" in result.stderr


def test_steps_of_a_shard_group_into_one_allocation(tmp_path):
    """The profile's commented grouping: with every shard rule in group `bisect` and one
    component per group, the default DAG has one group job per (metric, method, shard) chain,
    each holding that chain's budget + 1 step jobs."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    result = subprocess.run([*SNAKEMAKE, "-n", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                             "--profile", str(ROOT / "slurm"), "all", "--groups", "bisect_shard0=bisect",
                             "--group-components", "bisect=1"],
                            capture_output=True, text=True, env={**os.environ, "DATABRITTLE_SLURM_GPU": "gpu"},
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    chains = len(config["methods"]) * len(config["bisection"]["metrics"])  # one shard (per_job = n_targets)
    groups = result.stdout.split("Group job bisect")[1:]
    assert len(groups) == chains
    steps = config["bisection"]["budget"] + 1
    assert all(len(re.findall(r"^\s*rule bisect_shard0:$", group.split("Group job")[0], re.MULTILINE)) == steps
               for group in groups)


# Jobs of the paper-scale DAGs once the data checkpoint has run (every bisection step listed):
# CIFAR-10: 12 methods x 2 metrics x 10 shards x (budget 7 + 1) steps; ImageNet: 3 methods x 1
# metric x 30 shards x 8 steps. The other rules: one job per method (rankings; lds_scores and
# lds_method where LDS runs), per (metric, method) (support), per extractor, plus figures.
PAPER_DAGS = {
    "cifar10": {"bisect": 12 * 2 * 10 * 8, "shards": 10, "rankings": 12, "support": 24, "ssl": 1,
                "supervised_extractor": 1, "features": 2, "reference": 1, "lds_ground_truth": 1, "lds_method": 12},
    "imagenet": {"bisect": 3 * 1 * 30 * 8, "shards": 30, "rankings": 3, "support": 3, "ssl": 1, "features": 1,
                 "reference": 1, "lds_ground_truth": 0, "lds_method": 0, "supervised_extractor": 0},
}


@pytest.mark.parametrize("name", sorted(PAPER_DAGS))
def test_paper_scale_dry_run_lists_every_job_with_gpus_on_training_rules_only(tmp_path, name):
    """`snakemake --profile slurm -n all --configfile config/<name>.yaml` after the data job:
    the expected jobs, a GPU for the rules that train networks (ImageNet's MoCo is imported,
    CIFAR-10's public datamodels are read from files: neither trains), none elsewhere, and the
    DAG builds well inside issue 5's 30 s (benchmarks/dag_scale.py records the time)."""
    config = prepare_workdir(tmp_path, name)
    seconds, result = dry_run(tmp_path, config, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = dry_run_jobs(result.stdout + result.stderr)
    counts = {rule: sum(1 for r, _, _ in jobs if r == rule) for rule in PAPER_DAGS[name] if rule not in ("bisect", "shards")}
    bisect = [(rule, w) for rule, w, _ in jobs if rule.startswith("bisect_shard")]
    assert len(bisect) == PAPER_DAGS[name]["bisect"]
    assert len({rule for rule, _ in bisect}) == PAPER_DAGS[name]["shards"]
    assert counts == {rule: n for rule, n in PAPER_DAGS[name].items() if rule not in ("bisect", "shards")}
    assert "data" not in {rule for rule, _, _ in jobs}  # the checkpoint is done
    public = name == "cifar10"  # config/cifar10.yaml: datamodels.source public
    imported_ssl = name == "imagenet"  # config/imagenet.yaml: ssl.moco.pretrained
    for rule, wildcards, resources in jobs:
        requested = {key: value for key, value in resources.items() if key in GPU_KEYS}
        wanted = trains_networks(rule, wildcards, public_datamodels=public) and not (rule == "ssl" and imported_ssl)
        assert requested == ({"gpu": "1"} if wanted else {}), f"{name}: {rule} {wildcards}: {requested}"
    assert seconds < 60, f"{name}: the dry run took {seconds:.0f} s"
    step = next(resources for rule, _, resources in jobs if rule == "bisect_shard0")
    # ImageNet: profiles/slurm-imagenet after profiles/slurm (12 h, 16 CPUs per step job)
    assert (step["runtime"], step["cpus_per_task"]) == (("720", "16") if name == "imagenet" else ("60", "2"))


def test_imagenet_profile_changes_only_resource_values():
    """profiles/slurm-imagenet repeats default-resources and set-resources of profiles/slurm
    (a later profile replaces whole keys) with other values, and changes nothing else."""
    base = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    imagenet = yaml.safe_load((ROOT / "profiles" / "slurm-imagenet" / "config.yaml").read_text())
    assert set(imagenet) == {"default-resources", "set-resources"}
    assert set(imagenet["default-resources"]) == set(base["default-resources"])
    assert set(base["set-resources"]) <= set(imagenet["set-resources"])  # no rule loses its own values


# --- through a real SLURM -------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_slurm(tmp_path_factory):
    """A private one-node SLURM (its own config, munge key, ports), stopped afterwards."""
    if sys.platform != "linux":
        pytest.skip("SLURM test cluster: needs Linux")
    if os.geteuid() != 0:
        pytest.skip("SLURM test cluster: needs root (installs slurm-wlm, starts slurmctld and slurmd)")
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        pytest.skip("SLURM test cluster: slurm-wlm is not installed and there is no apt-get to install it")
    directory = tmp_path_factory.mktemp("slurm")
    started = subprocess.run(["bash", str(SCRIPT), "start", str(directory)], capture_output=True, text=True,
                             env={**os.environ, "PYTHON": sys.executable}, timeout=240)
    if started.returncode == SKIP_STATUS:
        pytest.skip(f"SLURM test cluster: {started.stderr.strip().splitlines()[-1].removeprefix('SKIP: ')}")
    try:
        assert started.returncode == 0, f"local_slurm.sh start failed:\n{started.stdout}\n{started.stderr}"
        yield directory
    finally:
        pids = [p.read_text().strip() for p in directory.rglob("*.pid") if p.read_text().strip()]
        stopped = subprocess.run(["bash", str(SCRIPT), "stop", str(directory)], capture_output=True, text=True,
                                 timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        assert not alive, f"daemons still running after local_slurm.sh stop: {alive}"


def site_profile(directory: Path) -> Path:
    """profiles/slurm with this cluster's site values, as a site would write its own profile."""
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    site = {**profile, "default-resources": {**profile["default-resources"], "slurm_partition": "debug",
                                             "slurm_account": ""},
            # no slurmdbd here: squeue, with MinJobAge=300 >= 3 x the first status delay;
            # short polling keeps the test short (the plugin adds 10 s per unfinished check)
            "slurm-status-command": "squeue", "slurm-init-seconds-before-status-checks": 5,
            "seconds-between-status-checks": 2}
    changed = {key for key in site.keys() | profile.keys() if site.get(key) != profile.get(key)}
    assert changed <= SITE_OPTIONS | {"default-resources"}, changed
    resources = profile["default-resources"]
    assert {k for k in site["default-resources"] if site["default-resources"][k] != resources.get(k)} <= SITE_RESOURCES
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(site, sort_keys=False))
    return directory


def small_config(workdir: Path) -> Path:
    """The tiny config narrowed to one method, one metric and two targets (one shard);
    device stays `auto` (CPU here)."""
    text = (ROOT / "config" / "test.yaml").read_text()
    for pattern, line in [(r"^methods: .*$", "methods: [random]"), (r"^  metrics: .*$", "  metrics: [removal]"),
                          (r"^  n_targets: .*$", "  n_targets: 2"), (r"^  per_job: .*$", "  per_job: 2")]:
        text, count = re.subn(pattern, line, text, flags=re.MULTILINE)
        assert count == 1, pattern
    assert re.search(r"^device: auto$", text, re.MULTILINE)
    path = workdir / "config" / "slurm.yaml"
    path.write_text(text)
    return path


def run_through_slurm(directory: Path, workdir: Path, profile: Path, config: Path, target: str, style: str,
                      limit: int) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """`snakemake --profile slurm --profile <site> TARGET` from the repository root; returns the
    run and its SLURM job ids -> rule (from the plugin's submission lines)."""
    # PATH: the test cluster's client wrappers, and this venv (the jobs run snakemake again)
    env = {**os.environ, "PATH": f"{directory / 'bin'}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "DATABRITTLE_SLURM_GPU": style}
    command = [*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
               "--profile", "slurm", "--profile", str(profile), "--configfile", str(config), "--", target]
    # a Snakemake waiting on a lost job ignores SIGTERM: timeout -k kills it
    started = time.monotonic()
    result = subprocess.run(["timeout", "-k", "10", str(limit), *command], cwd=ROOT, capture_output=True, text=True,
                            env=env, timeout=limit + 30)
    log = result.stdout + result.stderr
    details = f"{log[-4000:]}\nslurmctld.log:\n{(directory / 'slurmctld.log').read_text()[-2000:]}"
    assert result.returncode == 0, details
    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+?)/", log))
    assert submitted, details
    print(f"{target} ({style} style): {len(submitted)} SLURM jobs in {time.monotonic() - started:.0f} s")
    return result, submitted


def slurm_job(directory: Path, job_id: str) -> dict[str, str]:
    """SLURM's record of a job (kept MinJobAge = 300 s after it ends)."""
    shown = subprocess.run([str(directory / "bin" / "scontrol"), "show", "job", "-o", job_id], capture_output=True,
                           text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    return dict(field.split("=", 1) for field in shown.stdout.split() if "=" in field)


def check_jobs(directory: Path, workdir: Path, submitted: dict[str, str], gpu_field: str) -> None:
    for job_id, rule in submitted.items():
        job = slurm_job(directory, job_id)
        assert job["JobState"] == "COMPLETED", (rule, job)
        assert job["Comment"].startswith(f"rule_{rule}"), (rule, job["Comment"])
        assert job["Partition"] == "debug"
        asked = {key: value for key, value in job.items() if "gpu" in value}
        if GPU_RULES.fullmatch(rule):
            assert asked.get(gpu_field) == "gres:gpu:1", f"{rule} (SLURM job {job_id}) asked for no GPU: {job}"
        else:
            assert not asked, f"CPU rule {rule} (SLURM job {job_id}) asked for a GPU: {asked}"
        logs = list((workdir / "results" / "slurm_logs").glob(f"rule_{rule}/**/{job_id}.log"))
        assert logs and re.search(rf"^(rule|checkpoint) {rule}:$", logs[0].read_text(), re.MULTILINE), \
            f"no SLURM log of job {job_id} ({rule})"


def test_small_target_runs_through_slurm_with_gpu_requests(local_slurm, tmp_path):
    """Data -> reference models (in the --gpus style), then targets -> rankings -> bisection
    steps -> support CSV (in the --gres style), every job an sbatch job of the test cluster."""
    workdir = tmp_path / "work"
    shutil.copytree(ROOT / "config", workdir / "config")
    config = small_config(workdir)
    profile = site_profile(tmp_path / "site")

    _, first = run_through_slurm(local_slurm, workdir, profile, config, "results/digits/reference/logits.npy",
                                 "gpu", limit=100)
    assert sorted(first.values()) == ["data", "reference"]
    check_jobs(local_slurm, workdir, first, gpu_field="TresPerJob")  # --gpus=1

    support = "results/digits/support/removal/mlp/random.csv"
    _, second = run_through_slurm(local_slurm, workdir, profile, config, support, "gres", limit=180)
    assert sorted(second.values()) == ["bisect_shard0", "bisect_shard0", "rankings", "support", "targets"]
    check_jobs(local_slurm, workdir, second, gpu_field="TresPerNode")  # --gres=gpu:1

    table = pd.read_csv(workdir / support)
    assert len(table) == 2 and (table["steps_run"] >= 1).all()
