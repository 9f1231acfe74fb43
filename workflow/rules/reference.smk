rule reference:
    input:
        unpack(image_betons),
        train_data=checked_train_data,
        test_data=f"{RESULTS}/data/test.npz",
    output:
        mean_logits=f"{RESULTS}/reference/logits.npy",
        model_logits=f"{RESULTS}/reference/model_logits.npy",
        sidecar=f"{RESULTS}/reference/logits.json",
    params:
        stage="reference_models",
        counterfactual=config["counterfactual"],
        n_models=config["reference"]["n_models"],
        seed=config["seed"],
        device=config["device"],
        code=code("reference", *TRAINER),
    resources:
        **gpu_resources(),
    log:
        f"{LOGS}/reference.log",
    benchmark:
        f"{BENCH}/reference.tsv"
    script:
        STAGE_SCRIPT


rule targets:
    input:
        unpack(image_betons),
        model_logits=rules.reference.output.model_logits,
        train_data=checked_train_data,
        test_data=f"{RESULTS}/data/test.npz",
    output:
        targets_csv=f"{RESULTS}/targets.csv",
        sidecar=f"{RESULTS}/targets.json",
    params:
        stage="choose_targets",
        n_targets=config["targets"]["n_targets"],
        k=config["bisection"]["k"],
        require_correct=config["targets"].get("require_correct", True),
        seed=config["seed"],
        code=code("reference", "train", *DATA, "seeds"),
    log:
        f"{LOGS}/targets.log",
    script:
        STAGE_SCRIPT
