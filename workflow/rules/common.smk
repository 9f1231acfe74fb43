# Helpers shared by the rule files (no rules here). Logic lives in src/databrittle.
import os
import sys
from functools import partial

from databrittle.budget import models_used
from databrittle.config import canonical, training_section, validate_config
from databrittle.methods import EXTRACTORS as EXTRACTOR_NAMES, SSL_METHODS, extractors_used, is_attribution, parse_method
from databrittle.errors import InputError
from databrittle.provenance import code_hash

try:
    validate_config(config)
except InputError as error:
    sys.exit(f"databrittle: {error}")
config.update(canonical(config))  # params must not depend on the YAML's key order

DS = config["dataset"]
RESULTS = f"results/{DS}"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
ARCH = config["counterfactual"]["arch"]
METHODS = config["methods"]
METRICS = config["bisection"]["metrics"]
EXTRACTORS = extractors_used(METHODS)
BUDGET = config["bisection"]["budget"]
N_TARGETS = config["targets"]["n_targets"]
PER_JOB = config["targets"]["per_job"]
SHARDS = [list(range(start, min(start + PER_JOB, N_TARGETS))) for start in range(0, N_TARGETS, PER_JOB)]
STAGE_SCRIPT = "../scripts/run_stage.py"
# Modules behind databrittle.datasets.load_split (ImageNet's views read the betons through
# beton_images, imagenet, device and pretrained's normalisation constants): every rule that
# loads a split lists them.
DATA = ("datasets", "beton_images", "imagenet", "pretrained", "device")
# Modules behind databrittle.train.train_models: every rule that trains lists them.
TRAINER = ("train", "schedule", "mlp_trainer", "torch_trainer", "beton_trainer", "train_augment", "architectures",
           "device", "seeds", *DATA)


def code(*modules):
    """Hash of the package modules a rule uses: editing them marks its results stale."""
    return code_hash(["stages", "workflow_adapter", "io", "provenance", "config", "errors", *modules])


def image_betons(wildcards):
    """ImageNet's betons, for the rules that read its images through {split}.npz (tracked by
    Snakemake only, not passed to the stage); nothing for the in-memory datasets."""
    if DS != "imagenet":
        return {}
    return {f"tracked_{split}_beton": f"{RESULTS}/data/{split}.beton" for split in ("train", "test")}


def slot_dir(slot):
    return f"t{slot:03d}"


def step_file(slot, step="{step}"):
    return f"{RESULTS}/bisect/{{metric}}/{{arch}}/{{method}}/{slot_dir(slot)}/step{step}.json"


def ranking_file(method="{method}"):
    return f"{RESULTS}/rankings/{method}.npy"


def method_features(wildcards):
    """Files a ranking method reads: an extractor's features, or a baseline's user files
    (the public datamodels), so Snakemake tracks them; none for the random control."""
    spec = parse_method(wildcards.method)
    extractor = spec.extractor
    if spec.similarity == "datamodels" and config["datamodels"].get("source", "train") == "public":
        public = config["datamodels"]["public"]
        used = ("masks", "margins") if spec.n_models is not None else ("masks", "margins", "weights")
        return {f"public_{key}": public[key] for key in used if key in public}
    if extractor is None:
        return {}
    return {f"{split}_features": f"{RESULTS}/features/{extractor}/{split}.npy" for split in ("train", "test")}


def checked_train_data(wildcards):
    """The decoded train split, after checking bisection.k against its class pools.

    ``data`` is a checkpoint, so this check runs as soon as the split exists and before
    any training job is scheduled.
    """
    data = checkpoints.data.get()
    if data.output.sidecar not in CHECKED_SIDECARS:  # once per Snakemake process, not once per job
        from databrittle.stages import check_data_dependent

        check_data_dependent(data.output.sidecar, config)
        CHECKED_SIDECARS.add(data.output.sidecar)
    return f"{RESULTS}/data/train.npz"


CHECKED_SIDECARS = set()


def support_files(methods, metric="{metric}"):
    return [f"{RESULTS}/support/{metric}/{ARCH}/{m}.csv" for m in methods]


def extractor_checkpoint(wildcards):
    """Checkpoint of a feature extractor: an SSL model or the supervised network."""
    if wildcards.extractor == "supervised":
        return f"{RESULTS}/supervised/supervised.pt"
    return f"{RESULTS}/ssl/{wildcards.extractor}.pt"


def feature_layer(wildcards):
    """The configured layer; a supervised network has no projection head, so its backbone."""
    return "backbone" if wildcards.extractor == "supervised" else config["ssl"]["feature_layer"]


def previous_steps(wildcards, slots):
    """The step s-1 file of the shard's first target (none for step 0): one file orders the
    DAG, since one job writes all of a shard's step files; the stage reads the others beside
    its outputs. (Listing all of them made the CIFAR-10 DAG slow to build.)"""
    step = int(wildcards.step)
    if step == 0:
        return []
    return [step_file(slots[0], step - 1).format(**wildcards)]


def pretrained_checkpoint(wildcards):
    """A published checkpoint the extractor imports instead of training (tracked as input)."""
    section = training_section(config["ssl"], wildcards.ssl)
    return {"pretrained": section["pretrained"]["path"]} if "pretrained" in section else {}


def ssl_trains(wildcards):
    """Whether the ssl job trains (it only imports a published checkpoint when one is configured)."""
    return not pretrained_checkpoint(wildcards)


def ssl_training_section(wildcards):
    """The ssl keys that shape this extractor's training (shared keys + ssl.<method>)."""
    return canonical(training_section(config["ssl"], wildcards.ssl))


def baseline_params(wildcards):
    """For an attribution baseline, exactly the settings its scores depend on; else empty.

    Models trained here depend on the recipe and device; the datamodels masks are checked
    against the LDS masks (n_subsets, alpha); public datamodels depend on their files only.
    """
    spec = parse_method(wildcards.method)
    if not is_attribution(spec):
        return {}
    options = dict(config.get(spec.similarity, {}))
    if spec.n_models is not None:  # trak-N / datamodels-N
        options["n_models"] = spec.n_models
    if spec.similarity == "datamodels" and options.get("source", "train") == "public":
        return {"options": options}
    params = {"options": options, "counterfactual": config["counterfactual"], "device": config["device"]}
    if spec.similarity == "datamodels":
        params["lds"] = {key: config["lds"][key] for key in ("n_subsets", "alpha")}
    return params


def ranking_code(wildcards):
    """Code hash of a ranking: a baseline's own module (and the trainer), or the feature path."""
    spec = parse_method(wildcards.method)
    if is_attribution(spec):
        return code("rank", "methods", *DATA, "reference", "lds", "baselines.run",
                    f"baselines.{spec.similarity}", *TRAINER)
    return code("rank", "esvm", "methods", *DATA, "reference", "seeds")


def esvm_params(wildcards):
    """ESVM settings for ESVM methods only, so changing C reruns nothing else."""
    return config["esvm"] if parse_method(wildcards.method).similarity == "esvm" else {}


# GPU requests, for cluster executors (profiles/slurm). Every rule that runs networks (ssl
# unless it imports a published checkpoint, supervised_extractor, features, reference, each
# bisect_shard<N>, lds_ground_truth, and the rankings of the attribution baselines that train
# models) declares `resources: **gpu_resources(...)`; every other rule asks for none. The request lives in the rules, not in the profile, because the bisection rules are
# generated per shard (bisect_shard0, bisect_shard1, ...) and a profile's set-resources can
# only name rules it knows. Sites ask for a GPU in one of two ways, chosen by the environment
# variable DATABRITTLE_SLURM_GPU (the same value on the submit host and in the jobs, which
# inherit the environment):
#   gpu (default)  -> resource gpu=1            -> the SLURM plugin submits with --gpus=1
#   gpu:<model>    -> gpu=1, gpu_model=<model>  -> --gpus=<model>:1
#   gres           -> resource gres="gpu:1"     -> --gres=gpu:1
#   gres:<type>    -> gres="gpu:<type>:1"       -> --gres=gpu:<type>:1
#   none           -> no GPU request (a CPU-only cluster; config device: auto then trains on CPU)
# Local runs (--cores) do not limit these resources, so they change nothing there.
GPU_STYLES = "gpu, gpu:<model>, gres, gres:<type> or none"


def gpu_request(style):
    """The resources one GPU job asks for in the given DATABRITTLE_SLURM_GPU style."""
    kind, _, name = style.strip().partition(":")
    if kind == "gpu":
        return {"gpu": 1, **({"gpu_model": name} if name else {})}
    if kind == "gres":
        return {"gres": f"gpu:{name}:1" if name else "gpu:1"}
    if kind == "none" and not name:
        return {}
    sys.exit(f"databrittle: DATABRITTLE_SLURM_GPU={style!r}: expected {GPU_STYLES}")


GPU_REQUEST = gpu_request(os.environ.get("DATABRITTLE_SLURM_GPU") or "gpu")


def gpu_resources(when=None):
    """Resources of a rule that trains networks; with ``when`` (a function of the wildcards),
    only its jobs for which it is true ask for a GPU (a resource that evaluates to None is
    dropped by Snakemake, so the others ask for nothing)."""
    if when is None:
        return dict(GPU_REQUEST)
    return {key: (lambda wildcards, value=value: value if when(wildcards) else None) for key, value in GPU_REQUEST.items()}


def ranking_trains_models(wildcards):
    """Whether a ranking trains models: the attribution baselines (trak, datamodels, gradcos)
    do, except datamodels from the public release (files only); feature methods and the
    random control only read features or draw numbers."""
    spec = parse_method(wildcards.method)
    if not is_attribution(spec):
        return False
    return not (spec.similarity == "datamodels" and config["datamodels"].get("source", "train") == "public")
