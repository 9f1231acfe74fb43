"""Counterfactual-trainer throughput (issue 3), measured in one run against baselines of the same run.

CPU mode (default; the digits network of the default config):
    python benchmarks/trainer_throughput.py --mode cpu
prints, for the same in-process trainer (:func:`databrittle.train.train_models`):
models per second trained one at a time vs all in one batched call (best of --repeats
interleaved runs of each; every run's time is printed too), the ratio, the test
accuracy of both (mean and std over the seeds), and the batched trainer's achieved FLOP/s
as a fraction of this machine's dense float32 matrix-multiply throughput, measured first.

GPU mode (the paper's CIFAR-10 ResNet-9 recipe, A.2):
    python benchmarks/trainer_throughput.py --mode gpu [--cifar-root DIR]
trains ResNet-9s for 24 epochs at batch 512 on CIFAR-10-shaped data (real CIFAR-10 when
torchvision finds it under --cifar-root, without downloading; otherwise random images,
whose accuracy means nothing and is labelled so), and prints seconds per model, models per
GPU-hour and the A100-equivalent under the stated conversion.

Everything printed is measured in this run; a JSON summary goes to --json when given.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from databrittle.datasets import load_digits_splits  # noqa: E402
from databrittle.mlp_trainer import training_flops_per_sample  # noqa: E402
from databrittle.schedule import ModelJob, kept_indices  # noqa: E402
from databrittle.seeds import derive_seed  # noqa: E402
from databrittle.train import TrainConfig, train_models  # noqa: E402

# Dense bf16 tensor-core peaks (TFLOP/s, without sparsity) from the vendors' data sheets, for
# the A100-equivalent conversion of GPU mode: models/hour x (A100 peak / this GPU's peak).
BF16_PEAK_TFLOPS = {"A100": 312.0, "H100": 989.0, "H200": 989.0, "L40S": 362.0, "A10": 125.0}


def matmul_gflops(device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    """Best-of-``repeats`` dense matrix-multiply throughput (GFLOP/s) of ``size``-square matrices."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 2):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def plain_pytorch_model(job: ModelJob, images: np.ndarray, labels: np.ndarray, eval_images: np.ndarray,
                        cfg: TrainConfig) -> np.ndarray:
    """Context baseline: the usual one-model loop (nn.Sequential, autograd, torch.optim.SGD,
    F.cross_entropy) on the same data order, learning rates and recipe. Returns (n_eval, 10) logits."""
    from databrittle.schedule import lr_table, model_plan

    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)
    y = torch.from_numpy(labels)
    torch.manual_seed(job.seed)
    model = torch.nn.Sequential(torch.nn.Linear(x.shape[1], cfg.hidden), torch.nn.ReLU(), torch.nn.Linear(cfg.hidden, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    plan = model_plan(job, len(y), cfg.batch_size, cfg.epochs)
    lrs = lr_table(torch.tensor([len(plan)]), cfg.lr, cfg.peak_fraction)[:, 0].tolist()
    for index, lr in zip(plan, lrs):
        optimizer.param_groups[0]["lr"] = lr
        loss = torch.nn.functional.cross_entropy(model(x[index]), y[index], label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return model(torch.from_numpy(eval_images.reshape(len(eval_images), -1).astype(np.float32) / 255.0)).numpy()


def cpu_mode(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg = TrainConfig.from_config(config["counterfactual"])
    splits = load_digits_splits(config["data"]["test_fraction"], derive_seed(config["seed"], "split"))
    train, test = splits["train"], splits["test"]
    device = torch.device("cpu")
    peak = matmul_gflops(device, torch.float32)

    def run(jobs):
        return timed(lambda: train_models(train.images, train.labels, jobs, cfg, test.images, 10, device))

    seeds = [derive_seed(1, "benchmark", i) for i in range(args.models)]
    run([ModelJob(seed=seeds[0])])  # warm-up (allocator, first-call costs)
    single_seconds, batched_seconds = [], []
    for _ in range(args.repeats):  # interleaved, so a burst of load hits both sides
        single_logits, times = [], []
        for seed in seeds[: args.single]:
            logits, seconds = run([ModelJob(seed=seed)])
            single_logits.append(logits[0])
            times.append(seconds)
        single_seconds.append(sum(times))
        batched_logits, seconds = run([ModelJob(seed=s) for s in seeds])
        batched_seconds.append(seconds)
    peak_after = matmul_gflops(device, torch.float32)
    plain_logits, plain_seconds = timed(lambda: [plain_pytorch_model(ModelJob(seed=s), train.images, train.labels,
                                                                     test.images, cfg) for s in seeds[: args.single]])
    plain_acc = np.array([(lg.argmax(-1) == test.labels).mean() for lg in plain_logits])
    single_acc = np.array([(lg.argmax(-1) == test.labels).mean() for lg in single_logits])
    batched_acc = (batched_logits.argmax(-1) == test.labels).mean(1)
    steps = len(kept_indices(ModelJob(seed=0), len(train.labels))) // cfg.batch_size * cfg.epochs
    flops = args.models * steps * cfg.batch_size * training_flops_per_sample(64, cfg.hidden, 10)
    single_rate = args.single / min(single_seconds)
    batched_rate = args.models / min(batched_seconds)
    achieved = flops / min(batched_seconds) / 1e9
    if abs(peak_after - peak) > 0.2 * max(peak, peak_after):
        print(f"warning: matmul throughput moved from {peak:.0f} to {peak_after:.0f} GFLOP/s during the run: "
              "the machine was busy; rerun when it is idle", file=sys.stderr)
    return {
        "mode": "cpu", "threads": args.threads, "recipe": cfg.__dict__, "models_batched": args.models,
        "models_single": args.single, "repeats": args.repeats,
        "matmul_fp32_gflops": round(peak, 1), "matmul_fp32_gflops_after": round(peak_after, 1),
        "single_seconds_each_repeat": [round(x, 2) for x in single_seconds],
        "batched_seconds_each_repeat": [round(x, 2) for x in batched_seconds],
        "single_models_per_s": round(single_rate, 2), "batched_models_per_s": round(batched_rate, 2),
        "speedup": round(batched_rate / single_rate, 2),
        "single_accuracy": [round(float(single_acc.mean()), 4), round(float(single_acc.std()), 4)],
        "batched_accuracy": [round(float(batched_acc.mean()), 4), round(float(batched_acc.std()), 4)],
        "same_seed_max_abs_logit_diff": float(np.abs(np.stack(single_logits) - batched_logits[: args.single]).max()),
        "plain_pytorch_models_per_s": round(args.single / plain_seconds, 2),
        "speedup_over_plain_pytorch": round(batched_rate / (args.single / plain_seconds), 2),
        "plain_pytorch_accuracy": [round(float(plain_acc.mean()), 4), round(float(plain_acc.std()), 4)],
        "batched_gflops": round(achieved, 1), "fraction_of_matmul": round(achieved / max(peak, peak_after), 3),
        "flops_per_sample": training_flops_per_sample(64, cfg.hidden, 10),
    }


def cifar_data(root: str | None, train_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """CIFAR-10 train/test uint8 (N, 32, 32, 3) from torchvision's files, or random stand-ins."""
    if root:
        try:
            from torchvision.datasets import CIFAR10

            train = CIFAR10(root, train=True, download=False)
            test = CIFAR10(root, train=False, download=False)
            return (train.data, np.array(train.targets), test.data, np.array(test.targets), True)
        except RuntimeError as error:
            print(f"CIFAR-10 not found under {root} ({error}); using random images", flush=True)
    generator = np.random.default_rng(0)
    return (generator.integers(0, 256, (train_size, 32, 32, 3), dtype=np.uint8), generator.integers(0, 10, train_size),
            generator.integers(0, 256, (1000, 32, 32, 3), dtype=np.uint8), generator.integers(0, 10, 1000), False)


def gpu_mode(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--mode gpu: no CUDA GPU is visible")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu (smoke run)"
    train_x, train_y, test_x, test_y, real = cifar_data(args.cifar_root, args.train_size)
    cfg = TrainConfig(arch="resnet9", epochs=args.epochs, batch_size=512, lr=0.5, lr_peak_epoch=5 * args.epochs / 24,
                      momentum=0.9, weight_decay=5e-4, label_smoothing=0.1, augment=True,
                      arch_options={"width": args.width})
    peak = matmul_gflops(device, torch.bfloat16, size=8192 if device.type == "cuda" else 256)
    times, accuracies = [], []
    for i in range(args.models + 1):  # model 0 warms cuDNN autotuning up and is not counted
        logits, seconds = timed(lambda: train_models(train_x, train_y, [ModelJob(seed=derive_seed(2, "gpu", i))], cfg,
                                                     test_x, 10, device))
        print(f"model {i}: {seconds:.1f} s, accuracy {(logits[0].argmax(-1) == test_y).mean():.4f}", flush=True)
        if i:
            times.append(seconds)
            accuracies.append(float((logits[0].argmax(-1) == test_y).mean()))
    per_model = float(np.mean(times))
    per_hour = 3600 / per_model
    key = next((k for k in BF16_PEAK_TFLOPS if k in name), None)
    a100_equivalent = per_hour * BF16_PEAK_TFLOPS["A100"] / BF16_PEAK_TFLOPS[key] if key else None
    return {
        "mode": "gpu", "gpu": name, "real_cifar10": real, "epochs": args.epochs, "models": args.models,
        "seconds_per_model": round(per_model, 2), "models_per_gpu_hour": round(per_hour, 1),
        "accuracy_mean": round(float(np.mean(accuracies)), 4), "matmul_bf16_tflops": round(peak / 1e3, 1),
        "a100_equivalent_models_per_hour": round(a100_equivalent, 1) if a100_equivalent else None,
        "conversion": f"x {BF16_PEAK_TFLOPS['A100']} / {BF16_PEAK_TFLOPS.get(key)} (dense bf16 data-sheet peaks)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--models", type=int, default=None, help="cpu: models in the batched call (default 128); "
                        "gpu: timed models (default 3)")
    parser.add_argument("--single", type=int, default=10, help="cpu: models trained one at a time (>= 10 seeds)")
    parser.add_argument("--threads", type=int, default=2, help="cpu: torch threads")
    parser.add_argument("--repeats", type=int, default=2, help="cpu: interleaved repeats; the best of each is reported")
    parser.add_argument("--epochs", type=int, default=24, help="gpu: epochs (paper A.2: 24)")
    parser.add_argument("--device", default="cuda", help="gpu: device (cpu only for a smoke run of the code path)")
    parser.add_argument("--width", type=float, default=1.0, help="gpu: ResNet-9 width (1.0 = paper)")
    parser.add_argument("--train-size", type=int, default=50000, help="gpu: random training images when no CIFAR-10")
    parser.add_argument("--cifar-root", default=None, help="gpu: folder holding torchvision's cifar-10-batches-py")
    parser.add_argument("--json", default=None, help="write the summary here too")
    args = parser.parse_args()
    if args.models is None:
        args.models = 128 if args.mode == "cpu" else 3
    summary = cpu_mode(args) if args.mode == "cpu" else gpu_mode(args)
    summary.update(machine=platform.processor() or platform.machine(), torch=torch.__version__,
                   command=" ".join(sys.argv))
    for key, value in summary.items():
        print(f"{key:34s} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
