"""``rvos predict`` once its inputs are checked: load the model, predict, write the outputs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from rvos.errors import PredictorError, RvosError
from rvos.modeling.precision import choose_precision
from rvos.predictor.predictor import Predictor
from rvos.predictor.windows import DEFAULT_WINDOW, _check_window, default_overlap
from rvos.result import exports
from rvos.result.exports import ExportError, check_columns
from rvos.result.video_result import (
    VideoResult,
)
from rvos.result.writer import remove_outputs
from rvos.zoo.loader import load_model_from

__all__ = ["run_predict_cli"]


def run_predict_cli(args: argparse.Namespace, texts: list[str], out: Path) -> int:
    """``python -m rvos predict`` once `rvos.cli.predict` has checked the video, the
    expressions and the output folder: loads the model, predicts, writes the outputs. Returns
    the exit code (0 ok, 2 bad input). Interrupted (KeyboardInterrupt, which the CLI also raises
    on SIGTERM), it removes what it wrote before passing the interruption on."""
    errors = (RvosError, OSError)  # bad input, or the user's own files
    started = False
    try:
        window = DEFAULT_WINDOW if args.window is None else args.window
        overlap = default_overlap(window) if args.overlap is None else args.overlap
        _check_window(window, overlap)
        try:
            figure_frames = check_columns(getattr(args, "figure_frames", 5))
        except ExportError as err:
            raise PredictorError(f"--figure-frames: {err}") from None
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise PredictorError(f"--device {device}: no CUDA GPU is usable here; "
                                 "use --device cpu")
        # Before the model loads: a mode slower than fp32 here is refused at once; auto is resolved
        # (result.json records the mode that ran).
        precision = choose_precision(args.precision, device)
        model, name = load_model_from(
            args.model, args.checkpoint, device=device, text_encoder=args.text_encoder,
            offline=getattr(args, "offline", None), progress=not args.quiet)
        predictor = Predictor(model, device=device, window=window, overlap=overlap,
                              short_side="auto" if args.short_side is None else args.short_side,
                              threshold=args.threshold,
                              model_name=name, precision=precision,
                              presence_threshold=getattr(args, "presence_threshold", None),
                              objects=getattr(args, "objects", "best"))
        # From here on the folder holds this run's outputs only, or none.
        started = True
        remove_outputs(out)
        result, paths = _run_with_progress(predictor, args, texts)
        if getattr(args, "figure", False) or getattr(args, "gif", False):
            paths.update(_write_slides(result, args, figure_frames))
    except errors as err:
        if started:
            remove_outputs(out)
        message = err.for_cli() if hasattr(err, "for_cli") else err  # CLI advice, not Python's
        print(f"rvos predict: error: {message}", file=sys.stderr)
        return 2
    except BaseException:  # Ctrl-C, SIGTERM: what was written of this run goes
        if started:
            remove_outputs(out)
        raise
    t = result.timings
    slides = "".join(f", {paths[k]}" for k in ("figure_png", "figure_pdf", "gif") if k in paths)
    print(f"{result.num_frames} frames, {len(result)} expression(s) in {t['total_s']:.1f} s "
          f"({t['frames_per_second']:.1f} frames/s); wrote {paths['overlay']}, "
          f"{paths['masks']}/, {paths['masks_zip']}, {paths['result']}{slides}")
    return 0


def _write_slides(result: VideoResult, args: argparse.Namespace, columns: int
                  ) -> dict[str, Path]:
    """--figure / --gif: the slide exports, from the result and the source frames."""
    paths: dict[str, Path] = {}
    if args.figure:
        paths.update(exports.write_figure(result, args.out, columns=columns))
    if args.gif:
        paths["gif"] = exports.write_gif(result, Path(args.out) / "overlay.gif")
    return paths


def _run_with_progress(predictor: Predictor, args: argparse.Namespace, texts: list[str]
                       ) -> tuple[VideoResult, dict[str, Path]]:
    """Predict while writing the outputs into ``args.out``, with a progress bar."""
    bar = None
    if not args.quiet:
        # lazy: the progress bar is the CLI's only
        from tqdm import tqdm

        bar = tqdm(total=None, unit="frame", desc="predict", file=sys.stderr, leave=True)
    try:
        for progress in predictor.iter_predict(args.video, texts, fps=args.fps,
                                               max_frames=args.max_frames, out_dir=args.out):
            if bar is not None:
                bar.total = progress.total_frames
                bar.update(progress.frames_done - bar.n)
            if progress.result is not None:
                return progress.result, progress.paths
    finally:
        if bar is not None:
            bar.close()
    raise AssertionError("iter_predict ended without a result")
