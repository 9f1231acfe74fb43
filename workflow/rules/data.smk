# The betons are the storage; each is decoded back once, in the same job, into the
# arrays (.npz) that every later job loads (importing FFCV costs ~7 s per process).
checkpoint data:
    output:
        train_beton=f"{RESULTS}/data/train.beton",
        test_beton=f"{RESULTS}/data/test.beton",
        train_data=f"{RESULTS}/data/train.npz",
        test_data=f"{RESULTS}/data/test.npz",
        split_csv=f"{RESULTS}/data/split.csv",
        sidecar=f"{RESULTS}/data/data.json",
    params:
        stage="prepare_data",
        dataset=DS,
        data=config["data"],
        seed=config["seed"],
        code=code(*DATA, "cifar10", "seeds"),
    log:
        f"{LOGS}/data.log",
    benchmark:
        f"{BENCH}/data.tsv"
    script:
        STAGE_SCRIPT

