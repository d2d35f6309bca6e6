"""cmh.runs: what a run leaves on disk, and how it continues.

    run_folder   train.log, metrics.jsonl, args.json, resuming a run folder
    checkpoints  atomic, CRC-checked checkpoints loaded with weights_only=True
    warm_start   --init-from: a fresh run from another run's weights
    reuse        benchmark scripts' runs: fresh, resumed, or reused with the same arguments
    sweeps       a sweep folder (bits{B}/seed{S}/) read back: finished and unfinished runs
"""
