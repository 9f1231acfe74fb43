rule ssl:
    input:
        unpack(image_betons),
        unpack(pretrained_checkpoint),
        train_data=checked_train_data,
        test_data=f"{RESULTS}/data/test.npz",
    output:
        checkpoint=f"{RESULTS}/ssl/{{ssl}}.pt",
        sidecar=f"{RESULTS}/ssl/{{ssl}}.json",
    wildcard_constraints:
        ssl="|".join(SSL_METHODS),
    params:
        stage="train_extractor",
        kind="{ssl}",
        backbone=config["backbone"],
        section=ssl_training_section,
        seed=config["seed"],
        device=config["device"],
        torch_threads=2,
        code=code("ssl", "ssl_objectives", "pretrained", "augment", "models", "features", *DATA,
                  "device", "seeds"),
    threads: 2
    resources:
        **gpu_resources(when=ssl_trains),
    log:
        f"{LOGS}/ssl/{{ssl}}.log",
    benchmark:
        f"{BENCH}/ssl/{{ssl}}.tsv"
    script:
        STAGE_SCRIPT


rule supervised_extractor:
    input:
        unpack(image_betons),
        train_data=checked_train_data,
        test_data=f"{RESULTS}/data/test.npz",
    output:
        checkpoint=f"{RESULTS}/supervised/supervised.pt",
        sidecar=f"{RESULTS}/supervised/supervised.json",
    params:
        stage="train_extractor",
        kind="supervised",
        backbone=config["backbone"],
        section=config["supervised"],
        seed=config["seed"],
        device=config["device"],
        torch_threads=2,
        code=code("ssl", "augment", "models", "features", *DATA, "device", "seeds"),
    threads: 2
    resources:
        **gpu_resources(),
    log:
        f"{LOGS}/supervised.log",
    benchmark:
        f"{BENCH}/supervised.tsv"
    script:
        STAGE_SCRIPT


rule features:
    input:
        unpack(image_betons),
        checkpoint=extractor_checkpoint,
        train_data=f"{RESULTS}/data/train.npz",
        test_data=f"{RESULTS}/data/test.npz",
    output:
        train_npy=f"{RESULTS}/features/{{extractor}}/train.npy",
        test_npy=f"{RESULTS}/features/{{extractor}}/test.npy",
        sidecar=f"{RESULTS}/features/{{extractor}}/features.json",
    params:
        stage="extract_features",
        layer=feature_layer,
        device=config["device"],
        code=code("ssl", "ssl_objectives", "augment", "models", "features", *DATA, "device"),
    resources:
        **gpu_resources(),
    log:
        f"{LOGS}/features/{{extractor}}.log",
    benchmark:
        f"{BENCH}/features/{{extractor}}.tsv"
    script:
        STAGE_SCRIPT
