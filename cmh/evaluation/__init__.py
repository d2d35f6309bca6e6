"""cmh.evaluation: codes, the metrics of codes, and what a run reports.

    encoding           a model's ±1 codes of a split, retrieval metrics, the results table
    from_checkpoint    checkpoint -> data -> model -> label check -> codes (evaluate, retrieve)
    hamming_metrics    mAP over Hamming ranking (both tie policies), chance level (pure numpy)
    retrieval_curves   precision@N and PR over the Hamming radius (pure numpy)
    plots              the PR and P@N figures of a run
    training_curves    loss and validation curves of a run folder
    reference_protocol the reference's query protocol beside ours (--query-every)
    seed_table         mean and spread over seeds (pure)
"""
