rule rankings:
    input:
        unpack(method_features),
        train_data=f"{RESULTS}/data/train.npz",
        targets_csv=rules.targets.output.targets_csv,
    output:
        ranking=f"{RESULTS}/rankings/{{method}}.npy",
        ranking_scores=f"{RESULTS}/rankings/{{method}}.scores.npy",
        score_vectors=f"{RESULTS}/scores/{{method}}.npy",
        sidecar=f"{RESULTS}/rankings/{{method}}.json",
    params:
        stage="rank_method",
        method="{method}",
        k=config["bisection"]["k"],
        esvm=config["esvm"],
        top_fraction=config["lds"]["top_fraction"],
        seed=config["seed"],
        code=code("rank", "datasets", "reference", "seeds"),
    log:
        f"{LOGS}/rankings/{{method}}.log",
    benchmark:
        f"{BENCH}/rankings/{{method}}.tsv"
    script:
        STAGE_SCRIPT
