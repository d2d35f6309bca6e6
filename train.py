"""Train the image and text hashers jointly with the inter/intra-modal triplet ranking loss.

    python train.py --data DIR --bits 32 --margin 12      # a prepared dataset (python data.py prepare)
    python train.py --demo                                # generated demo data, CPU-sized settings

Phases: arguments -> data -> model -> optimizer -> resume -> epochs (train, validate, checkpoint)
-> final evaluation of the queries against the database with the best checkpoint. Model selection
uses the validation items against the training items only; the queries are touched once, at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from cmh.config import train_flags
from cmh.config.argument_checks import check_args
from cmh.data.dataset import reset_truncation_reports
from cmh.data.prepared_folder import check_prepared_folder
from cmh.engine import torchrun
from cmh.engine.loop import Run, fit, frozen_features
from cmh.engine.run_setup import model_config, objective_state, prepare_run
from cmh.evaluation.encoding import default_directions, format_table, retrieval_metrics
from cmh.evaluation.plots import plot_title, save_plots
from cmh.evaluation.reference_protocol import seed_protocol
from cmh.models.hashers import check_pretrained
from cmh.runs.checkpoints import load_checkpoint
from cmh.runs.run_folder import (
    check_new_run,
    finished_run,
    interrupted_message,
    record_failure,
    resolve_amp,
    resumed_args,
    setup_logging,
    where_it_went,
)
from cmh.utils import progress
from cmh.utils.atomic_io import write_text_atomic
from cmh.utils.devices import resolve_device, thread_note
from cmh.utils.errors import UserError, check_all
from cmh.utils.folder_lock import writing_folder
from cmh.utils.interrupts import Interrupted, stop_on_signals

log = logging.getLogger("train")


def _parser(defaults: bool = True) -> argparse.ArgumentParser:
    return train_flags.parser(defaults, description=__doc__)


def parse_args(argv=None) -> argparse.Namespace:
    """train.py's arguments (cmh/config/train_flags.py: the flags, their groups and defaults)."""
    return train_flags.parse_args(argv, description=__doc__)


def final_evaluation(run: Run, model) -> dict:
    """The queries against the database, with the weights of best.pt loaded into the run's
    model (built once per run): the reported numbers."""
    state = load_checkpoint(run.out / "best.pt")
    model.load_state_dict(state["model"])
    enc = run.encode(model, ("query", "database"))
    results = retrieval_metrics(enc["query"], enc["database"], default_directions(model))
    results.update(
        best_epoch=state["epoch"],
        bits=run.cfg.bits,
        margin=run.args.margin,
        n_query=len(enc["query"]["labels"]),
        n_database=len(enc["database"]["labels"]),
        epochs=run.args.epochs,  # what --resume compares to say the run is finished
        **seed_protocol(run.out),  # --query-every: the queries-selected numbers, beside ours
    )
    write_text_atomic(run.out / "results.json", json.dumps(results, indent=2) + "\n")
    title = plot_title(run.out, run.args.data, run.cfg.bits, state["epoch"])
    save_plots(
        enc["query"],
        enc["database"],
        run.out,
        default_directions(model),
        results=results,
        title=title,
    )
    return results


def check_processes(args: argparse.Namespace, dist) -> None:
    """What the number of torchrun processes rules out."""
    for flag in ("cuda_graphs", "resident_data"):
        if dist.world > 1 and getattr(args, flag, False):
            raise UserError(
                f"--{flag.replace('_', '-')} runs in one process (no DDP gradient hooks in a "
                "captured step, no split of the resident data); run it without torchrun, or "
                "use --parallel in scripts/run_all_bits.sh for several runs on one GPU"
            )
    if args.batch_size % dist.world:
        raise UserError(
            f"--batch-size {args.batch_size} (the global batch) must be divisible "
            f"by the number of processes, {dist.world}"
        )


def run(args: argparse.Namespace) -> int:
    if args.resume:
        args = resumed_args(args)
        finished = finished_run(args)
        if finished:
            print(finished)
            return 0
    check_args(args)
    out = Path(args.out)
    check_new_run(out, args.resume)
    dist, device = torchrun.init(resolve_device(args.device))
    check_processes(args, dist)
    if not dist.is_main:
        return train(args, out, dist, device)
    # One writer per run folder. A start refused (bad input) or stopped by Ctrl-C before its first
    # checkpoint leaves no folder; a crash keeps its train.log to look at (a rerun reuses it).
    refused = (UserError, KeyboardInterrupt)
    with writing_folder(out, "a training run", done_when="last.pt", take_back=refused):
        check_new_run(out, args.resume)  # again, now that no other process can start one here
        return train(args, out, dist, device)


def train(args: argparse.Namespace, out: Path, dist, device) -> int:
    """Data, model, the epochs and the final evaluation, in the (locked) run folder ``out``."""
    if not args.resume:  # the data folder and both towers' pretrained models, before any work
        check_all(lambda: args.demo or check_prepared_folder(args.data),
                  lambda: check_pretrained(model_config(args)))  # fmt: skip
    setup_logging(out if dist.is_main else None)
    reset_truncation_reports()
    resolve_amp(args, device, dist.is_main)
    data, model, tokenizer, cfg, optimizer, start = prepare_run(args)
    model.to(device)
    run = Run.create(args, data, tokenizer, cfg, device, out, dist=dist)
    run.objective_state = objective_state(run, model, start.get("objective_state"))
    if args.freeze_backbones:
        run.features = frozen_features(run, model, args.feature_cache or data.root / "features")
    if dist.is_main:
        write_text_atomic(out / "args.json", json.dumps(vars(args), indent=2) + "\n")
    sizes = {k: len(v) for k, v in data.splits.items()}
    log.info("data %s: %s; model: %d bits, image %s, text %s (%s); device %s, %s", data.root, sizes,
             cfg.bits, cfg.image_encoder, cfg.text_encoder, cfg.text_model, device, thread_note())  # fmt: skip
    try:
        with stop_on_signals():
            fit(run, model, optimizer, start)
    except Interrupted as e:
        log.error("%s", interrupted_message(out, e.name))
        return e.exit_status
    except FloatingPointError as e:
        last = out / "last.pt"
        kept = (
            f"The last good checkpoint is {last}"
            if last.is_file()
            else "no checkpoint was written (the first epoch did not complete)"
        )
        log.error("stopped: %s. %s", e, kept)
        return 1
    except torch.OutOfMemoryError as e:
        raise UserError(
            f"out of GPU memory at --batch-size {args.batch_size} ({str(e).splitlines()[0]}); "
            f"lower --batch-size or add --amp. The last good checkpoint is {out / 'last.pt'}"
        ) from e
    if dist.is_main:
        results = final_evaluation(run, model)
        log.info(
            "final evaluation (queries vs database, best epoch %s):\n%s",
            results["best_epoch"],
            format_table(results),
        )
        log.info("%s", where_it_went(out, results["best_epoch"], args.demo, args.given))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    progress.configure(args.progress)
    log.handlers.clear()  # an earlier run's log (same process) must not receive this one's error
    try:
        return run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        record_failure(Path(args.out), f"error: {e}")
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside the epochs (they handle it themselves)
        print(interrupted_message(Path(args.out), "SIGINT"), file=sys.stderr)
        return 130
    finally:
        torchrun.shutdown()


if __name__ == "__main__":
    sys.exit(main())
