checkpoint data:
    output:
        train_beton=f"{RESULTS}/data/train.beton",
        test_beton=f"{RESULTS}/data/test.beton",
        split_csv=f"{RESULTS}/data/split.csv",
        sidecar=f"{RESULTS}/data/data.json",
    params:
        stage="prepare_data",
        dataset=DS,
        data=config["data"],
        seed=config["seed"],
        code=code("datasets", "seeds"),
    log:
        f"{LOGS}/data.log",
    benchmark:
        f"{BENCH}/data.tsv"
    script:
        STAGE_SCRIPT


rule decode_split:
    input:
        beton=f"{RESULTS}/data/{{split}}.beton",
    output:
        decoded=f"{RESULTS}/data/{{split}}.npz",
    wildcard_constraints:
        split="train|test",
    params:
        stage="decode_split",
        code=code("datasets"),
    log:
        f"{LOGS}/decode_{{split}}.log",
    script:
        STAGE_SCRIPT
