# Algorithm 1, one job per (metric, arch, method, shard of targets, step). Shards are fixed by
# config targets.per_job, so each shard gets its own rule whose outputs are its targets' step files.


for shard_id, shard_slots in enumerate(SHARDS):

    rule:
        name:
            f"bisect_shard{shard_id}"
        input:
            unpack(image_betons),
            train_data=checked_train_data,
            test_data=f"{RESULTS}/data/test.npz",
            targets_csv=rules.targets.output.targets_csv,
            ranking=ranking_file(),
            previous_steps=partial(previous_steps, slots=shard_slots),
        output:
            step_files=[step_file(slot) for slot in shard_slots],
        params:
            stage="bisect_step",
            step="{step}",
            metric="{metric}",
            method="{method}",
            slots=shard_slots,
            k=config["bisection"]["k"],
            n_test=config["bisection"]["n_test"],
            counterfactual=config["counterfactual"],
            seed=config["seed"],
            device=config["device"],
            code=code("support", "bisect", "reference", *TRAINER),
        resources:
            **gpu_resources(),
        log:
            f"{LOGS}/bisect/{{metric}}/{{arch}}/{{method}}/shard{shard_id}/step{{step}}.log",
        benchmark:
            f"{BENCH}/bisect/{{metric}}/{{arch}}/{{method}}/shard{shard_id}/step{{step}}.tsv"
        script:
            STAGE_SCRIPT


rule support:
    input:
        final_steps=[step_file(slot, BUDGET) for slot in range(N_TARGETS)],
    output:
        support=f"{RESULTS}/support/{{metric}}/{{arch}}/{{method}}.csv",
    params:
        stage="support_csv",
        n_steps=BUDGET + 1,
        code=code("support", "bisect"),
    log:
        f"{LOGS}/support/{{metric}}/{{arch}}/{{method}}.log",
    script:
        STAGE_SCRIPT
