rule lds_ground_truth:
    input:
        unpack(image_betons),
        train_data=checked_train_data,
        test_data=f"{RESULTS}/data/test.npz",
        targets_csv=rules.targets.output.targets_csv,
    output:
        masks_npy=f"{RESULTS}/lds/masks.npy",
        margins_npy=f"{RESULTS}/lds/margins.npy",
        sidecar=f"{RESULTS}/lds/ground_truth.json",
    params:
        stage="lds_ground_truth",
        lds={key: config["lds"][key] for key in ("n_subsets", "alpha", "models_per_subset")},
        counterfactual=config["counterfactual"],
        seed=config["seed"],
        device=config["device"],
        code=code("lds", "reference", *TRAINER),
    resources:
        **gpu_resources(),
    log:
        f"{LOGS}/lds/ground_truth.log",
    benchmark:
        f"{BENCH}/lds/ground_truth.tsv"
    script:
        STAGE_SCRIPT


rule lds_method:
    input:
        masks_npy=rules.lds_ground_truth.output.masks_npy,
        margins_npy=rules.lds_ground_truth.output.margins_npy,
        score_vectors=f"{RESULTS}/scores/{{method}}.npy",
        targets_csv=rules.targets.output.targets_csv,
    output:
        lds_csv=f"{RESULTS}/lds/{{method}}.csv",
    params:
        stage="lds_method",
        code=code("metrics", "reference"),
    log:
        f"{LOGS}/lds/{{method}}.log",
    script:
        STAGE_SCRIPT
