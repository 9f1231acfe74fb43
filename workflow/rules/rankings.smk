rule rankings:
    input:
        unpack(image_betons),
        unpack(method_features),
        train_data=f"{RESULTS}/data/train.npz",
        test_data=f"{RESULTS}/data/test.npz",
        targets_csv=rules.targets.output.targets_csv,
    output:
        ranking=f"{RESULTS}/rankings/{{method}}.npy",
        ranking_scores=f"{RESULTS}/rankings/{{method}}.scores.npy",
        similarity=f"{RESULTS}/similarity/{{method}}.npy",
        sidecar=f"{RESULTS}/rankings/{{method}}.json",
    params:
        stage="rank_method",
        method="{method}",
        k=config["bisection"]["k"],
        esvm=esvm_params,
        baseline=baseline_params,
        seed=config["seed"],
        code=ranking_code,
    resources:
        **gpu_resources(when=ranking_trains_models),
    log:
        f"{LOGS}/rankings/{{method}}.log",
    benchmark:
        f"{BENCH}/rankings/{{method}}.tsv"
    script:
        STAGE_SCRIPT


rule lds_scores:
    input:
        unpack(image_betons),
        similarity=rules.rankings.output.similarity,
        train_data=f"{RESULTS}/data/train.npz",
        targets_csv=rules.targets.output.targets_csv,
    output:
        score_vectors=f"{RESULTS}/scores/{{method}}.npy",
    params:
        stage="lds_scores",
        method="{method}",
        top_fraction=config["lds"]["top_fraction"],
        code=code("rank", "methods", *DATA, "reference"),
    log:
        f"{LOGS}/scores/{{method}}.log",
    script:
        STAGE_SCRIPT
