"""Benchmark runs on Ref-YouTube-VOS and Ref-DAVIS17: predictions and scores, sharded with torchrun.

Command line::

    python -m rvos dataset predict --format ytvos|davis ROOT --split valid --out DIR
        [--model NAME | --checkpoint PATH] [--device D] [--resume | --overwrite] [--offline]
        [--window N] [--overlap N] [--short-side N] [--precision P] [--max-videos N] [--quiet]
    torchrun --nproc-per-node N -m rvos dataset predict ...      (also --nnodes M, rendezvous)
    python -m rvos dataset eval --format davis|ytvos ROOT --split valid --pred DIR [--gt DIR]

**predict** reads the official layout (`rvos.layouts`) and writes what ReferFormer writes
(`rvos.dataset_inference`): ytvos ``DIR/<split>/<video>/<exp_id>/<frame>.png`` and
``DIR/submission.zip`` for the server; davis ``DIR/<split>/anno_<a>/<video>/<frame>.png``.
``DIR/predict-<split>.json`` records the model, the settings and the seconds spent on each
video.

* **Sharding.** Under torchrun each rank predicts its share of the videos (balanced by frames
  times expressions, `rvos.distributed.split_work`) on the GPU of its local rank, or the CPU;
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
measures for each annotator's folder and their mean over annotators (`rvos.davis`; tables
written into each ``anno_<a>`` folder and the mean into ``DIR/<split>``); ytvos, where the
ground truth is available (``obj_id`` in the meta file and ``<split>/Annotations``; not for the
valid split, which only the server scores), the same measures per expression. The last line
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

import numpy as np

from rvos.layouts import (
    DAVIS_ANNOTATORS,
    FORMATS,
    DatasetError,
    PredictionFolder,
    Split,
    read_split,
    write_submission,
)

__all__ = ["add_cli_arguments", "evaluate_predictions", "run_cli"]


# ------------------------------------------------------------------------------------ predict


class _Progress:
    """The rank-0 bar: polls the prediction folder for the videos still pending."""

    def __init__(self, folder: PredictionFolder, names: Sequence[str], enabled: bool) -> None:
        self.folder, self.pending = folder, set(names)
        self.bar = None
        self._stop = threading.Event()
        self._thread = None
        if enabled:
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
    from rvos.evaluate import load_model_for_eval

    if args.checkpoint is not None and args.model is None:
        name = Path(args.checkpoint).name
    else:
        name = args.model or "builtin"
    first = workers.local_rank == 0

    def load():
        return load_model_for_eval(
            args.model if args.checkpoint is None else None,
            args.checkpoint,
            device,
            args.text_encoder,
            offline=args.offline,
            progress=first and not args.quiet,
        )

    if first:
        model = load()
        group.barrier()
    else:
        group.barrier()
        model = load()
    return model.eval(), name


def _run_record(args: argparse.Namespace, model_name: str, settings) -> dict:
    from rvos import __version__

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


def _plan(
    split: Split, folder: PredictionFolder, record: dict, args: argparse.Namespace
) -> list[str]:
    """Rank 0: check the output folder against the options, return the videos to predict."""
    record_path = folder.out / f"predict-{split.name}.json"
    done = [v.name for v in split.videos if folder.is_complete(v.name)]
    if args.resume and record_path.is_file():
        previous = json.loads(record_path.read_text())
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
    from rvos.dataset_inference import PredictSettings, predict_video
    from rvos.distributed import rank_device, split_work
    from rvos.predictor import model_short_side

    split = read_split(args.root, args.split, args.format)
    if args.max_videos is not None:
        split.videos = split.videos[: args.max_videos]
    device = rank_device(workers, args.device)
    model, model_name = _load_model(args, str(device), workers, group)
    short_side = args.short_side if args.short_side is not None else model_short_side(model)
    settings = PredictSettings.for_format(
        args.format, short_side, args.window, args.overlap, args.precision
    )
    if settings.precision != "fp32":
        from rvos.precision import with_precision

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
    if args.format == "ytvos":
        if missing:
            print(
                f"{len(missing)} videos of the split are not predicted (e.g. {missing[0]}); "
                "no submission.zip written",
                file=sys.stderr,
            )
        else:
            zipped = write_submission(folder, by_name)
            print(f"wrote {zipped} for the Ref-YouTube-VOS server")


def _run_predict(args: argparse.Namespace) -> int:
    from rvos.distributed import ProcessGroup, Workers

    try:
        workers = Workers.from_env()
    except ValueError as exc:
        print(f"rvos dataset predict: error: {exc}", file=sys.stderr)
        return 2
    rank = f"[rank {workers.rank}] " if workers.distributed else ""
    try:
        for opt, low in (("max_videos", 1), ("short_side", 8), ("window", 0), ("overlap", 0)):
            value = getattr(args, opt)
            if value is not None and value < low:
                raise DatasetError(f"--{opt.replace('_', '-')} must be >= {low}, got {value}")
        with ProcessGroup(workers) as group:
            return _predict(args, workers, group)
    except _user_errors() as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"rvos dataset predict: error: {rank}{msg}", file=sys.stderr)
        return 2


def _user_errors() -> tuple[type[BaseException], ...]:
    from rvos import registry
    from rvos.checkpoint import CheckpointError
    from rvos.download import DownloadError
    from rvos.hub import HubError

    return (
        DatasetError,
        CheckpointError,
        DownloadError,
        HubError,
        ValueError,
        OSError,
        registry.UnknownModelError,
        registry.ModelFileMissingError,
        registry.UnsupportedModelError,
    )


# --------------------------------------------------------------------------------------- eval


def _annotator_dirs(pred: Path, split: str) -> Path:
    for base in (pred / split, pred):
        if (base / "anno_0").is_dir():
            return base
    raise DatasetError(
        f"no anno_0 folder under {pred / split} or {pred}: --pred is the --out "
        "of `rvos dataset predict --format davis`"
    )


def evaluate_predictions(
    root: str | Path,
    split: str,
    fmt: str,
    pred: str | Path,
    gt: str | Path | None = None,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Score a prediction folder and write the result tables; see the module docstring.

    Returns ``{row: {column: value}}`` of the global measures (fractions in [0, 1]): davis rows
    ``anno_0`` .. ``anno_3`` and ``mean``; ytvos one row ``all``.
    """
    from rvos.davis import DavisScores, score_folder, write_tables

    split_info = read_split(root, split, fmt, check_frames=False)
    gt_root = Path(gt) if gt is not None else Path(root) / split / "Annotations"
    if not gt_root.is_dir():
        raise DatasetError(f"ground truth {gt_root} not found (--gt points elsewhere)")
    names = [v.name for v in split_info.videos]
    pred = Path(pred)
    bar = None
    if progress:
        from tqdm import tqdm

        total = len(names) * (DAVIS_ANNOTATORS if fmt == "davis" else 1)
        bar = tqdm(total=total, unit="video", desc=f"eval {split}", file=sys.stderr)
    tick = None if bar is None else (lambda _name: bar.update(1))
    try:
        if fmt == "ytvos":
            scores = _score_ytvos(split_info, gt_root, pred / split, tick)
            write_tables(pred / split, split, scores.global_results(), scores.per_sequence())
            return {"all": scores.global_results()}
        base = _annotator_dirs(pred, split)
        rows: dict[str, dict[str, float]] = {}
        per_seq: list[list[tuple[str, float, float]]] = []
        for a in range(DAVIS_ANNOTATORS):
            scores: DavisScores = score_folder(gt_root, base / f"anno_{a}", names, tick)
            rows[f"anno_{a}"] = scores.global_results()
            per_seq.append(scores.per_sequence())
            write_tables(base / f"anno_{a}", split, rows[f"anno_{a}"], per_seq[-1])
    finally:
        if bar is not None:
            bar.close()
    columns = list(rows["anno_0"])
    rows["mean"] = {
        c: float(np.mean([rows[f"anno_{a}"][c] for a in range(DAVIS_ANNOTATORS)])) for c in columns
    }
    mean_seq = [
        (
            name,
            float(np.mean([p[i][1] for p in per_seq])),
            float(np.mean([p[i][2] for p in per_seq])),
        )
        for i, (name, _, _) in enumerate(per_seq[0])
    ]
    write_tables(base, split, rows["mean"], mean_seq)
    return rows


def _score_ytvos(split: Split, gt_root: Path, pred_root: Path, tick):
    """Per expression: J and F of its mask against its object's ground truth, every frame."""
    from rvos.davis import DavisScores, ObjectScores, read_label_png
    from rvos.metrics import f_measure, jaccard

    objects = []
    for video in split.videos:
        gts = np.stack([read_label_png(gt_root / video.name / f"{f}.png") for f in video.frames])
        for e in video.expressions:
            if e.obj_id is None:
                raise DatasetError(
                    f"video {video.name!r}: expression {e.exp_id} has no obj_id; "
                    f"{split.name} has no public ground truth: submit "
                    "submission.zip to the Ref-YouTube-VOS server instead"
                )
            masks = []
            for f in video.frames:
                path = pred_root / video.name / e.exp_id / f"{f}.png"
                if not path.is_file():
                    raise DatasetError(f"video {video.name!r}: prediction {path} is missing")
                masks.append(read_label_png(path) > 127)
            target = gts == int(e.obj_id)
            pred = np.stack(masks)
            if pred.shape != target.shape:
                raise DatasetError(
                    f"video {video.name!r}: expression {e.exp_id} predicted at "
                    f"{pred.shape[1:]}, ground truth {target.shape[1:]}"
                )
            objects.append(
                ObjectScores(video.name, e.exp_id, jaccard(target, pred), f_measure(target, pred))
            )
        if tick is not None:
            tick(video.name)
    return DavisScores(objects)


def _run_eval(args: argparse.Namespace) -> int:
    try:
        rows = evaluate_predictions(
            args.root, args.split, args.format, args.pred, args.gt, progress=not args.quiet
        )
    except (DatasetError, OSError, ValueError) as exc:
        print(f"rvos dataset eval: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{'':<8} {'J&F':>6} {'J':>6} {'F':>6} {'J-Rec':>6} {'J-Dec':>6} {'F-Rec':>6} {'F-Dec':>6}"
    )
    for name, r in rows.items():
        values = [
            r[c]
            for c in ("J&F-Mean", "J-Mean", "F-Mean", "J-Recall", "J-Decay", "F-Recall", "F-Decay")
        ]
        print(f"{name:<8} " + " ".join(f"{100 * v:>6.1f}" for v in values))
    final = rows["mean" if args.format == "davis" else "all"]["J&F-Mean"]
    print(f"J&F: {100 * final:.1f}")
    return 0


# ---------------------------------------------------------------------------------------- CLI


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    from rvos.precision import PRECISIONS

    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser(
        "predict",
        help="predict a split of Ref-YouTube-VOS or Ref-DAVIS17",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", metavar="ROOT", help="dataset folder (the official layout)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        required=True,
        help="ytvos: Ref-YouTube-VOS; davis: Ref-DAVIS17",
    )
    p.add_argument("--split", default="valid", help="split folder name (default valid)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="registry name or hf://OWNER/REPO (`rvos models`; fetched on first use, once per "
        "machine; default builtin)",
    )
    which.add_argument(
        "--checkpoint",
        default=None,
        metavar="PATH",
        help="an official .pth, an rvos model folder or a `rvos train` checkpoint.pt",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        default=None,
        help="never download a model (also $RVOS_OFFLINE=1)",
    )
    p.add_argument(
        "--text-encoder",
        default=None,
        metavar="NAME_OR_DIR",
        help="official checkpoints: RoBERTa weights and tokenizer (default roberta-base)",
    )
    p.add_argument(
        "--device",
        default=None,
        help="cpu, cuda (the GPU of each local rank) or cuda:N (default: cuda when available)",
    )
    p.add_argument(
        "--window",
        type=int,
        default=None,
        help="frames per model call: 0 = the whole video (ytvos default, as the "
        "original); davis default 36 (the original's clips)",
    )
    p.add_argument(
        "--overlap",
        type=int,
        default=None,
        help="frames shared by consecutive windows (ytvos default 8 when a window "
        "is set; davis default 0, independent clips as the original)",
    )
    p.add_argument(
        "--short-side",
        type=int,
        default=None,
        help="resize frames to this short side (default: the model's; 360 for the released models)",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="fp32 (default, the original's and the one to reproduce published numbers), or a "
        "faster mode: bf16, fp16 (CUDA), int8 (CPU); see rvos.precision",
    )
    again = p.add_mutually_exclusive_group()
    again.add_argument(
        "--resume", action="store_true", help="skip the videos already complete in DIR"
    )
    again.add_argument(
        "--overwrite", action="store_true", help="delete the predictions already in DIR first"
    )
    p.add_argument(
        "--max-videos", type=int, default=None, help="predict only the first N videos (by name)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("eval", help="score predictions (DAVIS-2017 measures)")
    e.add_argument("root", metavar="ROOT", help="dataset folder (the official layout)")
    e.add_argument("--format", choices=FORMATS, required=True)
    e.add_argument("--split", default="valid", help="split folder name (default valid)")
    e.add_argument(
        "--pred", required=True, metavar="DIR", help="the --out folder of `rvos dataset predict`"
    )
    e.add_argument(
        "--gt",
        default=None,
        metavar="DIR",
        help="ground-truth label PNGs <video>/<frame>.png (default "
        "ROOT/<split>/Annotations; e.g. DAVIS/Annotations_unsupervised/480p)",
    )
    e.add_argument("--quiet", action="store_true", help="no progress bar")


def run_cli(args: argparse.Namespace) -> int:
    if args.action == "predict":
        return _run_predict(args)
    return _run_eval(args)
