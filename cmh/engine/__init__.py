"""cmh.engine: the training loop and everything that runs it.

    run_setup   the model config of the flags, the optimizer, the start state, objective state
    loop        Run (what every phase needs), one epoch, validation, checkpoints, the epochs
    graph_step  --cuda-graphs: the whole step captured once and replayed
    schedules   learning-rate schedules (--lr-schedule)
    torchrun    data-parallel training: process group and the few collectives used
"""
