"""Benchmark runs on Ref-YouTube-VOS, Ref-DAVIS17 and MeViS: predictions and scores, sharded with
torchrun.

Command line::

    python -m rvos dataset predict --format ytvos|davis|mevis ROOT --split valid --out DIR
        [--model NAME | --checkpoint PATH] [--device D] [--resume | --overwrite] [--offline]
        [--window N] [--overlap N] [--short-side N] [--precision P] [--max-videos N] [--quiet]
    torchrun --nproc-per-node N -m rvos dataset predict ...      (also --nnodes M, rendezvous)
    python -m rvos dataset eval --format davis|ytvos|mevis ROOT --split valid --pred DIR [--gt DIR]

**predict** reads the official layout (`rvos.data.layouts`) and writes what ReferFormer writes
(`rvos.eval.dataset_inference`): ytvos ``DIR/<split>/<video>/<exp_id>/<frame>.png`` and
``DIR/submission.zip`` for the server; davis ``DIR/<split>/anno_<a>/<video>/<frame>.png``;
mevis as ytvos (``--split valid_u`` or ``valid``), the zip holding the video folders at its root.
``DIR/predict-<split>.json`` records the model, the settings and the seconds spent on each
video.

* **Sharding.** Under torchrun each rank predicts its share of the videos (balanced by frames
  times expressions, `rvos.eval.distributed.split_work`) on the GPU of its local rank, or the CPU;
  every video is computed the same way whatever rank computes it, so the files are
  byte-identical to a single-process run. With several machines ``DIR`` must be a folder they
  all see (rank 0 writes the zip from it).
* **Resume.** Each video is written to ``DIR/.partial/`` and renamed into place when complete;
  ``--resume`` skips the videos that are in place (and refuses to mix settings or models), so a
  killed run loses at most the videos in flight. Without it, a folder that already holds
  predictions is refused unless ``--overwrite`` says to delete them.
* **Progress.** One bar, on rank 0, counts the videos every rank has finished (it watches the
  videos appear in ``DIR``).

**eval** scores predictions against ground truth: davis with the DAVIS-2017 unsupervised-task
measures for each annotator's folder and their mean over annotators (`rvos.eval.davis`; tables
written into each ``anno_<a>`` folder and the mean into ``DIR/<split>``); ytvos, where the
ground truth is available (``obj_id`` in the meta file and ``<split>/Annotations``; not for the
valid split, which only the server scores), the same measures per expression; mevis per
expression against the union of its objects' masks in ``<split>/mask_dict.json`` (valid_u; the
valid split only the server scores). The last line
printed is ``J&F: <percent>``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from rvos import __version__
from rvos.data.layouts import (
    PER_EXPRESSION_FORMATS,
    DatasetError,
    PredictionFolder,
    Split,
    read_split,
    write_submission,
)
from rvos.eval.dataset_inference import PredictSettings, predict_video
from rvos.eval.distributed import rank_device, split_work
from rvos.modeling.precision import choose_precision, with_precision
from rvos.modeling.processing import model_short_side
from rvos.zoo.loader import load_model_from


class _Progress:
    """The rank-0 bar: polls the prediction folder for the videos still pending."""

    def __init__(self, folder: PredictionFolder, names: Sequence[str], enabled: bool) -> None:
        self.folder, self.pending = folder, set(names)
        self.bar = None
        self._stop = threading.Event()
        self._thread = None
        if enabled:
            # lazy: the progress bar is the CLI's only
            from tqdm import tqdm

            self.bar = tqdm(
                total=len(names), unit="video", desc=f"predict {folder.split}", file=sys.stderr
            )
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def _poll(self) -> None:
        done = {n for n in self.pending if self.folder.is_complete(n)}
        self.pending -= done
        if done and self.bar is not None:
            self.bar.update(len(done))

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._poll()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.bar is not None:
            self._poll()
            self.bar.close()


def _load_model(args: argparse.Namespace, device: str, workers, group):
    """The model on every rank. A model fetched on first use is fetched once per machine: local
    rank 0 loads (and downloads) first, while the others wait for it."""
    first = workers.local_rank == 0

    def load():
        return load_model_from(
            args.model if args.checkpoint is None else None,
            args.checkpoint,
            device=device,
            text_encoder=args.text_encoder,
            offline=args.offline,
            progress=first and not args.quiet,
        )

    if first:
        model, name = load()
        group.barrier()
    else:
        group.barrier()
        model, name = load()
    return model.eval(), name


def _run_record(args: argparse.Namespace, model_name: str, settings) -> dict:
    return {
        "format": args.format,
        "split": args.split,
        "root": str(Path(args.root).resolve()),
        "model": model_name,
        "checkpoint": None if args.checkpoint is None else str(Path(args.checkpoint).resolve()),
        "settings": asdict(settings),
        "rvos": __version__,
    }


_SAME_RUN_KEYS = ("format", "split", "model", "checkpoint", "settings")
# Settings added after runs were recorded, with the value those runs had: a record without one
# was made with it, so --resume of such a run continues instead of refusing.
_SETTINGS_BEFORE = {"objects": "best"}


def _plan(
    split: Split, folder: PredictionFolder, record: dict, args: argparse.Namespace
) -> list[str]:
    """Rank 0: check the output folder against the options, return the videos to predict."""
    record_path = folder.out / f"predict-{split.name}.json"
    done = [v.name for v in split.videos if folder.is_complete(v.name)]
    if args.resume and record_path.is_file():
        previous = json.loads(record_path.read_text())
        if isinstance(previous.get("settings"), dict):
            previous["settings"] = {**_SETTINGS_BEFORE, **previous["settings"]}
        changed = [k for k in _SAME_RUN_KEYS if previous.get(k) != record[k]]
        if changed:
            raise DatasetError(
                f"{folder.out} holds predictions made with other {', '.join(changed)} "
                f"({', '.join(f'{k}={previous.get(k)!r}' for k in changed)}); --resume would "
                "mix them: choose another --out, or --overwrite"
            )
        record["videos"] = previous.get("videos", {})
    elif done and not args.resume:
        if not args.overwrite:
            raise DatasetError(
                f"{folder.split_dir} already holds predictions of {len(done)} video(s); add "
                "--resume to continue that run, or --overwrite to delete them"
            )
        shutil.rmtree(folder.split_dir, ignore_errors=True)
        shutil.rmtree(folder.partial_dir, ignore_errors=True)
        (folder.out / "submission.zip").unlink(missing_ok=True)
        done = []
    folder.prepare()
    record_path.write_text(json.dumps(record, indent=1))
    skip = set(done) if args.resume else set()
    return [v.name for v in split.videos if v.name not in skip]


def _predict(args: argparse.Namespace, workers, group) -> int:
    split = read_split(args.root, args.split, args.format)
    if args.max_videos is not None:
        split.videos = split.videos[: args.max_videos]
    device = rank_device(workers, args.device)
    model, model_name = _load_model(args, str(device), workers, group)
    short_side = args.short_side if args.short_side is not None else model_short_side(model)
    # "auto" becomes this machine's fastest mode; one slower than fp32 here is refused, saying why
    precision = choose_precision(args.precision, device)
    settings = PredictSettings.for_format(
        args.format, short_side, args.window, args.overlap, precision,
        objects=getattr(args, "objects", "best"),
    )
    if settings.precision != "fp32":
        model = with_precision(model, settings.precision)
    folder = PredictionFolder(args.out, args.split, args.format)
    record = _run_record(args, model_name, settings)

    todo: list[str] | str
    if workers.is_main:
        try:
            todo = _plan(split, folder, record, args)
        except (DatasetError, OSError, ValueError) as exc:
            todo = str(exc)  # every rank stops with this message
    else:
        todo = []
    todo = group.broadcast(todo)
    if isinstance(todo, str):
        raise DatasetError(todo)
    if workers.is_main and split.excluded:
        print(
            f"{len(split.excluded)} videos of meta_expressions/{split.name} are listed in the "
            "test split and left out",
            file=sys.stderr,
        )

    by_name = {v.name: v for v in split.videos}
    costs = [by_name[n].num_frames * (1 + len(by_name[n].expressions)) for n in todo]
    mine = [todo[i] for i in split_work(costs, workers.world_size)[workers.rank]]
    progress = _Progress(folder, todo, enabled=workers.is_main and not args.quiet)
    started = time.perf_counter()
    timings = []
    try:
        for name in mine:
            dirs = folder.start(name)
            timing = predict_video(model, by_name[name], settings, dirs, device)
            folder.commit(name)
            timings.append({**asdict(timing), "rank": workers.rank, "device": str(device)})
        group.barrier()
    finally:
        progress.close()
    wall = time.perf_counter() - started
    gathered = [t for share in group.gather(timings) for t in share]
    if workers.is_main:
        _finish(args, split, folder, record, gathered, todo, wall, workers.world_size)
    # Everyone leaves together, after rank 0's last file. Without this, a rank that exited while
    # rank 0 was still writing the zip aborted at exit in 1 run of 9 ("terminate called without
    # an active exception", inside torch's teardown); with it, in none of 32.
    group.barrier()
    return 0


def _finish(
    args: argparse.Namespace,
    split: Split,
    folder: PredictionFolder,
    record: dict,
    gathered: list[dict],
    todo: list[str],
    wall: float,
    world_size: int,
) -> None:
    """Rank 0, after every rank is done: the run record, the summary, the submission zip."""
    by_name = {v.name: v for v in split.videos}
    record.setdefault("videos", {}).update({t.pop("video"): t for t in gathered})
    record.update(world_size=world_size, last_run_wall_s=round(wall, 3))
    (folder.out / f"predict-{split.name}.json").write_text(json.dumps(record, indent=1))
    n_expr = sum(len(by_name[n].expressions) for n in todo)
    per_video = wall * world_size / max(len(todo), 1)
    print(
        f"{len(todo)} videos ({n_expr} expressions) in {wall:.1f} s on "
        f"{world_size} process(es): {per_video:.2f} s per video per process; "
        f"predictions in {folder.split_dir}"
    )
    missing = [v.name for v in split.videos if not folder.is_complete(v.name)]
    if args.format in PER_EXPRESSION_FORMATS:
        if missing:
            print(
                f"{len(missing)} videos of the split are not predicted (e.g. {missing[0]}); "
                "no submission.zip written",
                file=sys.stderr,
            )
        else:
            zipped = write_submission(folder, by_name)
            server = "Ref-YouTube-VOS" if args.format == "ytvos" else "MeViS"
            print(f"wrote {zipped} for the {server} server")
