"""rvos demo: referring video object segmentation with ReferFormer, in the browser.

    python app.py [--host HOST] [--port PORT] [--share] [--model NAME] [--checkpoint PATH]
                  [--device DEVICE] [--text-encoder NAME_OR_DIR] [--threads N] [--offline]
                  [--max-duration S] [--max-frames N] [--max-upload-mb MB]

Upload a clip (or pick an example), type up to four expressions, one per line, and press
Segment: the overlay video, the masks (zip) and result.json come back, and the frame explorer
shows, on any frame, every query's box and score, the decoder's layer-by-layer refinement,
every query's mask, which pixels attend to which word, and the queries' scores over time.
"Export for slides" writes figure.png / figure.pdf ("Make overlay.gif" the GIF, which takes
longer); Compare runs the clip through two models side by side. Everything the explorer
draws comes from the stored result; only the Segment and Compare buttons run a model.

Official models download on first use: the one of --model before the app serves (progress in
the log), the others when chosen in a menu, Segment's or Compare's (progress in the page), or
asked for by /segment or /compare.

Environment (for Hugging Face Spaces and containers): RVOS_MODEL, RVOS_CHECKPOINT, RVOS_DEVICE,
RVOS_TEXT_ENCODER, RVOS_THREADS, RVOS_MAX_DURATION, RVOS_MAX_FRAMES, RVOS_MAX_UPLOAD_MB,
RVOS_OFFLINE, RVOS_MIRROR, RVOS_CACHE, GRADIO_SERVER_NAME, GRADIO_SERVER_PORT; command-line
options win. RVOS_WORK_DIR: where the app's work folder (rvos-app-*, printed at start-up) is made;
it is removed when the app ends, on Ctrl-C and on SIGTERM alike.

Visitors see errors as text under the button they pressed (escaped, without server paths); the
log (stderr) keeps the full message, and the traceback of any view that could not be drawn.

API: ``/segment``, ``/compare`` (``masks_b``: another system's masks as B), ``/evaluate`` and
``/word_importance`` (see the README for gradio_client examples). On a Hugging Face ZeroGPU
Space every model call runs inside ``spaces.GPU`` (`rvos.app.zerogpu`).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import gradio as gr

from rvos.cli.main import passive_openmp

passive_openmp()  # before torch is imported (by app_support): see rvos.cli.main.passive_openmp
from rvos.app.compare import Comparison, prepare_compare  # noqa: E402
from rvos.app.evaluate import (  # noqa: E402
    Evaluation,
    clip_frames,
    evaluate_result,
    read_truth,
    write_scores,
)
from rvos.app.inputs import (  # noqa: E402
    RUN_ERRORS,
    SHORT_SIDE_RANGE,
    SHORT_SIDE_STEP,
    WINDOW_RANGE,
    AppInputError,
    Limits,
    RunSettings,
    available_devices,
    precision_choices,
)
from rvos.app.masks_zip import MasksZip  # noqa: E402
from rvos.app.models import ModelCache, RunSlot, model_choices  # noqa: E402
from rvos.app.runs import download_before_run, estimate_run, prepare_run, progress_text  # noqa: E402
from rvos.app.session import Session, first_frame, safe_view  # noqa: E402
from rvos.app.text import escape_markdown, public_message  # noqa: E402
from rvos.app.words import WordView, pick_expression, prepare_words  # noqa: E402
from rvos.app.words import to_json as words_json  # noqa: E402
from rvos.app.zerogpu import (  # noqa: E402
    max_seconds,
    on_gpu,
    record_run,
    recorded_estimate,
    run_duration,
    start_up_device,
    zero_gpu,
)
from rvos.result.video_result import VideoResult  # noqa: E402

HERE = Path(__file__).resolve().parent
log = logging.getLogger("rvos.app")
EXAMPLES_DIR = HERE / "examples"
VIDEO_HEIGHT, VIEW_HEIGHT, SCORES_HEIGHT = 320, 400, 260  # pixels on the page
DECODER_HEIGHT = 560  # the decoder view carries its legend: it needs the room
STATE_TTL_S = 2 * 3600  # a session's result (and its files) are dropped after two idle hours
# Small clips (the 256-pixel examples) fill their view instead of sitting in a corner of it.
# The examples' table wraps its text on a phone instead of cutting it off; the image views keep
# their label above Gradio's toolbar (which would cover a tile's title drawn at the top).
CSS = ("#queries img, #attn img, #scores img, #decoder img, #layers img, #qmasks img, #cview img,"
       " #cscores_a img, #cscores_b img {width: 100%; height: 100%; object-fit: contain;}"
       " .gradio-container table td, .gradio-container table th"
       " {white-space: normal !important; overflow-wrap: anywhere; word-break: break-word;}"
       " #examples_synthetic, #examples_real {max-width: 100%; overflow-x: auto;}"
       " #qmasks .icon-button-wrapper, #decoder .icon-button-wrapper"
       " {position: static; justify-content: flex-end;}")


def _error_text(err: BaseException) -> str:
    """The status line's Markdown for a failed action: the message, escaped and without server
    paths or operator advice; the log keeps the full message (and, for a bug, the traceback).
    Call it inside the ``except`` block."""
    if isinstance(err, gr.Error):
        text = err.message
    elif isinstance(err, RUN_ERRORS):
        text = str(err)
    else:
        log.exception("an action failed")
        text = "something went wrong on the server; try again, or with other settings"
    log.info("shown to the visitor: %s", text)
    return f"**Error:** {escape_markdown(public_message(text))}"


def _to_gr_error(err: BaseException) -> gr.Error:
    """``err`` for an API client: its message without server paths (the log keeps them)."""
    log.info("run failed: %s", err)
    return gr.Error(public_message(err), print_exception=False)


def _try(fallback, make, *args):
    """``make(*args)``, or ``fallback`` (logged) when it fails: a control update that cannot be
    built must not stop the views from filling."""
    try:
        return make(*args)
    except Exception:
        log.exception("an explorer control failed")
        return fallback


INTRO = """\
# Referring video object segmentation: ReferFormer
*Language as Queries for Referring Video Object Segmentation* (Wu et al., CVPR 2022). Each
expression becomes the queries of a transformer; on every frame each query proposes a box and
a mask with a score, and the best-scoring query over the clip is the answer. Upload a clip or
pick an example, type up to four expressions (one per line) and press **Segment**; then step
through the frames below.
"""

# Each stage links to the view that shows it (elem_ids; the browser test follows them).
HOW_IT_WORKS = """\
ReferFormer treats the sentence as a set of **queries** that look for the object in every frame.

1. **Backbone and text encoder.** A CNN or (Video-)Swin turns each frame into feature maps at
   strides 4-32; RoBERTa turns the sentence into one feature per word and one for the sentence.
2. **Early vision-language fusion.** Every pixel of the feature maps attends to the words and is
   multiplied by what it finds, so the maps already know what the sentence asks for:
   [Word attention](#attn) (feature levels "early fusion").
3. **Language as queries.** The sentence feature plus Q learned position embeddings make Q
   queries, the same in every frame, so query i is one object hypothesis through the clip:
   [Queries](#queries).
4. **Deformable transformer decoder.** Each layer starts every query from a reference point,
   samples the features around it and refines the query's box and score (iterative box
   refinement); the next layer starts from the new box's centre, and the last layer's box is the
   answer: [Decoder, layer by layer](#decoder), and the sampling points in [Queries](#queries).
5. **Cross-modal FPN.** The multi-scale features meet the words again and become stride-4 mask
   features: [Word attention](#attn) (feature levels "cross-modal FPN").
6. **Dynamic mask head.** Each query generates its own small convolution kernels and applies them
   to the mask features, so every query has a mask: [Every query's mask](#qmasks).
7. **Choosing the answer.** The query with the best mean score over the clip is the object and
   its masks the output: [Scores over time](#scores). Another backbone sees differently:
   [Compare two models](#compare).
"""


def _env(name: str, default=None, kind=str):
    value = os.environ.get(name)
    return default if value in (None, "") else kind(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="rvos Gradio demo (ReferFormer).")
    p.add_argument("--host", default=_env("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to listen on (0.0.0.0 for every interface; default "
                        "$GRADIO_SERVER_NAME or 127.0.0.1)")
    p.add_argument("--port", type=int, default=_env("GRADIO_SERVER_PORT", 7860, int),
                   help="port (default $GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--share", action="store_true", help="also serve on a public gradio.live link")
    p.add_argument("--model", default=_env("RVOS_MODEL"),
                   help="default model: a registry name (`python -m rvos models`; an official "
                        "one is downloaded before serving if needed) or hf://OWNER/REPO "
                        "(default builtin)")
    p.add_argument("--checkpoint", default=_env("RVOS_CHECKPOINT"),
                   help="weights: an official .pth or a save_pretrained folder (with --model: "
                        "that model's weights)")
    p.add_argument("--device", default=_env("RVOS_DEVICE"),
                   help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--text-encoder", default=_env("RVOS_TEXT_ENCODER"),
                   help="official checkpoints: RoBERTa name or local folder (default "
                        "roberta-base)")
    p.add_argument("--threads", type=int, default=_env("RVOS_THREADS", None, int),
                   help="CPU threads for torch (default: torch's choice; 1 is fastest for "
                        "small models on a busy CPU)")
    p.add_argument("--offline", action="store_true", default=None,
                   help="never download a model; the menu lists only those on this machine "
                        "(default $RVOS_OFFLINE)")
    p.add_argument("--max-duration", type=float, default=_env("RVOS_MAX_DURATION", 120.0, float),
                   help="seconds' worth of source frames a run may process (default 120): "
                        "with --max-frames, the limit on the work; a longer video is "
                        "accepted and processed from its start")
    p.add_argument("--max-frames", type=int, default=_env("RVOS_MAX_FRAMES", 300, int),
                   help="most frames processed per run (default 300)")
    p.add_argument("--max-upload-mb", type=int, default=_env("RVOS_MAX_UPLOAD_MB", 200, int),
                   help="largest accepted upload in MB (default 200)")
    return p.parse_args(argv)


def load_examples() -> tuple[list[list[str]], list[list[str]]]:
    """(synthetic examples for the built-in model, real clips for official checkpoints), each
    ``[video path, expressions]``; see examples/README.md."""
    spec = json.loads((EXAMPLES_DIR / "examples.json").read_text())
    return tuple([[str(EXAMPLES_DIR / e["video"]), "\n".join(e["expressions"])]
                  for e in spec.get(kind, [])] for kind in ("synthetic", "real"))


def build_demo(models: ModelCache, limits: Limits, device: str,
               work_dir: Path) -> gr.Blocks:
    """The Blocks UI; every callback converts UI values and calls `rvos.app.session`."""
    default = models.default
    devices = available_devices()
    if device not in devices:
        devices.insert(0, device)  # e.g. --device cuda:1

    def _before_the_slot(place, keys, video, expressions, settings, progress):
        """Check the inputs and download what `keys` need, then wait for the one-run slot
        (``place``, of `RunSlot`), yielding a status text as it goes; the caller releases
        the place. Segment and Compare run outside Gradio's one-at-a-time limit: this slot is
        what keeps runs one at a time, and a download does not hold it."""
        for step in download_before_run(models, keys, video, expressions, settings,
                                            limits):
            progress(step.fraction, desc=step.text)
            yield step.text
        for ahead in place.wait():
            text = (f"waiting for {ahead} run{'s' if ahead > 1 else ''} ahead of yours "
                    "to finish")
            progress(None, desc=text)
            yield text

    def _segment_steps(model, video, expressions, settings):
        """The model's part of `segment` (on ZeroGPU inside ``spaces.GPU``): ``(fraction, text,
        None)`` per window, then ``(1.0, text, Session)``."""
        run = prepare_run(models, model, video, expressions, settings, limits, work_dir)
        result = None
        with contextlib.closing(run.steps()) as steps:
            for step in steps:
                if step.result is not None:
                    result = step.result
                else:
                    yield step.fraction, progress_text(step), None
        try:
            yield 1.0, "finishing the overlay video and masks", None
        except GeneratorExit:  # stopped now: the outputs written so far go
            run.discard()
            raise
        yield 1.0, "done", run.finish(result)

    def _recorded(key, settings, result) -> None:
        """On ZeroGPU, the main process keeps the run's speed (`rvos.app.zerogpu.record_run`)."""
        if not zero_gpu():
            return
        h, w = result.settings["input_size"]
        record_run(models, models.choice(key).key, settings.checked(limits), (h, w),
                   sum(end - start for start, end in result.windows), len(result),
                   result.timings["model_s"])

    segment_steps = on_gpu(_segment_steps, lambda model, video, expressions, settings:
                           run_duration(models, limits, model, video,
                                        len((expressions or "").splitlines()), settings))

    def segment(video: str | None, expressions: str, model: str = default.key,
                threshold: float = 0.5, window: int = 36, fps: float = 0.0,
                max_frames: int = limits.max_frames, short_side: int = 0, device: str = device,
                precision: str = "fp32", previous: Session | None = None,
                presence_threshold: float | None = None, objects: str = "best",
                progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's injection idiom)
        """Segment what each expression (one per line, at most 4) refers to in the video.
        precision: fp32 (default), a mode faster on this machine (bf16 / int8 where the CPU
            runs them natively, bf16 / fp16 on a GPU), or auto (the fastest).
        presence_threshold: 0 to 1; frames where the chosen query's score is below it get an
            empty mask ("not found"); None: the model's own (0 unless its config names one).
        objects: best (the paper's one query per expression) or all (every object the
            expression refers to, each kept apart in result.json).
        Returns the overlay video, the masks (zip of PNGs), result.json and a summary."""
        settings = RunSettings(threshold, window, fps, max_frames, short_side, device,
                                   precision, presence_threshold, objects)
        place = models.slot.place()
        progress(0.0, desc="checking the input and loading the model")
        try:
            # A model that is not here downloads before this run takes the one-run slot.
            for text in _before_the_slot(place, [model], video, expressions, settings,
                                         progress):
                yield gr.skip(), gr.skip(), gr.skip(), text, gr.skip()
            session = None
            # Stop cancels this generator; closing the steps then ends the model and ffmpeg.
            with contextlib.closing(segment_steps(model, video, expressions,
                                                  settings)) as steps:
                for fraction, text, done in steps:
                    progress(fraction, desc=text)
                    if done is not None:
                        session = done
                    else:
                        yield gr.skip(), gr.skip(), gr.skip(), text, gr.skip()
            _recorded(model, settings, session.result)
        except RUN_ERRORS as err:
            raise _to_gr_error(err) from None
        finally:
            place.release()
        if previous is not None:  # (a State input: hidden from the API)
            previous.close()
        yield (str(session.paths["overlay"]), str(session.paths["masks_zip"]),
               str(session.paths["result"]), session.summary(), session)

    def segment_page(video, expressions, model=default.key, threshold=0.5, window=36,
                     fps=0.0, max_frames=limits.max_frames, short_side=0, device=device,
                     precision="fp32", previous=None, presence_threshold=None, objects="best",
                     progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's idiom)
        """`segment` for the page: a failure shows in the status line (until the next action)
        instead of failing the event, which would leave a textless "Error" badge on every
        output. The last value says whether a new result came (the explorer then fills)."""
        keep = (gr.skip(),) * 5
        yield *keep, "", False
        try:
            with contextlib.closing(segment(video, expressions, model, threshold, window, fps,
                                            max_frames, short_side, device, precision,
                                            previous, presence_threshold, objects,
                                            progress=progress)) as steps:
                for values in steps:
                    yield *values, "", isinstance(values[4], Session)
        except Exception as err:
            yield *keep, _error_text(err), False

    def rethreshold(session: Session | None, threshold: float, presence: float):
        if session is None:
            return (gr.skip(),) * 5 + ("",)
        try:
            session = session.rethreshold(float(threshold), float(presence))
        except Exception as err:
            return (gr.skip(),) * 5 + (_error_text(err),)
        return (str(session.paths["overlay"]), str(session.paths["masks_zip"]),
                str(session.paths["result"]), session.summary(), session, "")

    def explore(session: Session | None, fresh: bool = True):
        """Explorer controls for a new result, and its views at frame 0 of expression 1. Each
        view and control is guarded: one that fails shows a notice (views) or stays as it was
        (controls), and every other one still fills."""
        if session is None or not fresh:
            return (gr.skip(),) * 12
        levels = _try([], session.level_choices)
        level = levels[0][1] if levels else None
        heads = _try([("mean of heads", "mean")], session.head_choices)
        last = session.num_frames - 1
        return (gr.Slider(minimum=0, maximum=max(last, 1), value=0, step=1,
                          interactive=last > 0),
                _try(gr.skip(), lambda: gr.Radio(choices=session.expression_choices(),
                                                 value="0")),
                _try(gr.skip(), lambda: gr.Radio(choices=session.word_choices(0),
                                                 value="all")),
                gr.Dropdown(choices=levels, value=level),
                gr.Dropdown(choices=heads, value="mean", interactive=len(heads) > 1),
                _try(gr.skip(), lambda: gr.Radio(choices=session.decoder_query_choices(),
                                                 value="all")),
                *views(session, 0, 0, "all", level, "mean", False, "all"))

    def decoder_views(session, expression, frame, query):
        if session is None:
            return gr.skip(), gr.skip(), gr.skip()
        return (safe_view("Decoder", session.render_decoder, expression, frame, query),
                safe_view("Layer scores", session.render_layer_scores, expression, frame),
                safe_view("Every query's mask", session.render_query_masks, expression,
                              frame))

    def views(session, expression, frame, word, level, head, sampling, query):
        if session is None:
            return (gr.skip(),) * 6
        return (queries(session, expression, frame, sampling),
                attention(session, expression, frame, word, level, head),
                safe_view("Scores", session.render_scores, expression, frame),
                *decoder_views(session, expression, frame, query))

    def change_expression(session, expression, frame, level, head, sampling, query):
        if session is None:
            return (gr.skip(),) * 7
        return (_try(gr.skip(), lambda: gr.Radio(choices=session.word_choices(expression),
                                                 value="all")),
                *views(session, expression, frame, "all", level, head, sampling, query))

    def decoder(session, expression, frame, query):
        if session is None:
            return gr.skip()
        return safe_view("Decoder", session.render_decoder, expression, frame, query)

    def mask_views(session, expression, frame, sampling, query):
        """The views that draw masks or presence, after a threshold changed."""
        if session is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return (queries(session, expression, frame, sampling),
                decoder(session, expression, frame, query),
                safe_view("Every query's mask", session.render_query_masks, expression,
                              frame),
                safe_view("Scores", session.render_scores, expression, frame))

    def export_slides(session: Session | None, columns: float):
        """figure.png and figure.pdf of the current result, for the download buttons (the GIF
        has its own button: it takes far longer)."""
        if session is None:
            return (gr.skip(), gr.skip(), "Segment a video first: the slides are drawn from "
                                          "its result.")
        try:
            paths = session.export_slides(columns)
        except Exception as err:
            return gr.skip(), gr.skip(), _error_text(err)
        return (*(gr.DownloadButton(value=str(paths[k]), interactive=True)
                  for k in ("figure_png", "figure_pdf")), "")

    def export_gif(session: Session | None):
        """overlay.gif of the current result, for its download button."""
        if session is None:
            return gr.skip(), "Segment a video first: the GIF is drawn from its result."
        try:
            path = session.export_gif()
        except Exception as err:
            return gr.skip(), _error_text(err)
        return gr.DownloadButton(value=str(path), interactive=True), ""

    def _compare_steps(model_a, model_b, video, expressions, settings, masks_b=None):
        """The models' part of `compare` (on ZeroGPU inside ``spaces.GPU``): ``(fraction, text,
        None)`` per window, then ``(1.0, text, Comparison)``. With ``masks_b`` only model A
        runs."""
        run = prepare_compare(models, model_a, model_b, video, expressions, settings, limits,
                              work_dir, masks_b=masks_b)
        with contextlib.closing(run.steps()) as steps:
            for fraction, text in steps:
                yield fraction, text, None
        yield 1.0, "writing the overlays and the side-by-side video", None
        yield 1.0, "done", run.finish()

    compare_steps = on_gpu(_compare_steps, lambda model_a, model_b, video, expressions, settings,
                           masks_b=None: min(max_seconds(), sum(
                               run_duration(models, limits, m, video,
                                            len((expressions or "").splitlines()), settings)
                               for m in dict.fromkeys((model_a,) if masks_b
                                                      else (model_a, model_b)))))

    def compare(video: str | None, expressions: str, model_a: str = default.key,
                model_b: str = default.key, threshold: float = 0.5, window: int = 36,
                fps: float = 0.0, max_frames: int = limits.max_frames, short_side: int = 0,
                device: str = device, precision: str = "fp32",
                previous: Comparison | None = None, masks_b: str | None = None,
                presence_threshold: float | None = None, objects: str = "best",
                progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's injection idiom)
        """The same video and expressions through model_a and model_b (the same model twice is
        allowed; a model that is not here yet is downloaded first, as for /segment).
        masks_b: optional zip of another system's per-frame mask PNGs for this clip, shown as
            B in place of model_b (README: The app, Evaluate and compare with masks).
        presence_threshold, objects: as for /segment (None: each model's own threshold;
            objects=all compares each side's union of objects).
        Returns each model's overlay video and result.json (none for masks), both overlays
        side by side in one video, and a summary."""
        settings = RunSettings(threshold, window, fps, max_frames, short_side, device,
                                   precision, presence_threshold, objects)
        place = models.slot.place()
        progress(0.0, desc="checking the input and loading the models")
        try:
            # Models that are not here download before the one-run slot (as for segment).
            if masks_b:  # a bad zip fails before anything downloads or runs
                MasksZip.open(masks_b, "masks")
            keys = [model_a] if masks_b else [model_a, model_b]
            for text in _before_the_slot(place, keys, video, expressions, settings, progress):
                yield (gr.skip(),) * 5 + (text, gr.skip())
            result = None
            with contextlib.closing(compare_steps(model_a, model_b, video, expressions,
                                                  settings, masks_b)) as steps:
                for fraction, text, done in steps:
                    progress(fraction, desc=text)
                    if done is not None:
                        result = done
                    else:
                        yield (gr.skip(),) * 5 + (text, gr.skip())
            for key, done in zip((model_a, model_b), result.results, strict=True):
                if isinstance(done, VideoResult):  # (another system's masks have no speed)
                    _recorded(key, settings, done)
        except RUN_ERRORS as err:
            raise _to_gr_error(err) from None
        finally:
            place.release()
        if previous is not None:  # (a State input: hidden from the API)
            previous.close()
        p = {k: str(v) for k, v in result.paths.items()}
        yield (p["overlay_a"], p["overlay_b"], p["result_a"], p.get("result_b"),
               p["side_by_side"], result.summary(), result)

    def compare_page(video, expressions, model_a=default.key, model_b=default.key,
                     threshold=0.5, window=36, fps=0.0, max_frames=limits.max_frames,
                     short_side=0, device=device, precision="fp32", previous=None,
                     masks_b=None, presence_threshold=None, objects="best",
                     progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's idiom)
        """`compare` for the page: a failure shows in Compare's status line (see
        `segment_page`); the last value says whether a new comparison came."""
        keep = (gr.skip(),) * 7
        yield *keep, "", False
        try:
            with contextlib.closing(compare(video, expressions, model_a, model_b, threshold,
                                            window, fps, max_frames, short_side, device,
                                            precision, previous, masks_b,
                                            presence_threshold, objects,
                                            progress=progress)) as steps:
                for values in steps:
                    yield *values, "", isinstance(values[6], Comparison)
        except Exception as err:
            yield *keep, _error_text(err), False

    def compare_explore(comparison: Comparison | None, fresh: bool = True):
        if comparison is None or not fresh:
            return (gr.skip(),) * 5
        last = comparison.num_frames - 1
        view, plot_a, plot_b = compare_views(comparison, 0, "0")
        return (gr.Slider(minimum=0, maximum=max(last, 1), value=0, step=1,
                          interactive=last > 0),
                _try(gr.skip(), lambda: gr.Radio(choices=comparison.expression_choices(),
                                                 value="0")),
                view, plot_a,
                # B's plot: its query scores, or for masks (no scores) A and B's agreement
                gr.Image(plot_b, label="B (masks): A–B IoU per frame" if comparison.b_is_masks
                         else "Model B: query scores over time"))

    def compare_views(comparison, frame, expression):
        if comparison is None:
            return gr.skip(), gr.skip(), gr.skip()
        return (safe_view("A | B", comparison.render_frame, frame),
                safe_view("Model A's scores", comparison.render_scores, 0, expression,
                              frame),
                safe_view("Model B's scores", comparison.render_scores, 1, expression,
                              frame))

    def evaluate(video: str | None, expressions: str, ground_truth: str | None,
                 model: str = default.key, threshold: float = 0.5, window: int = 36,
                 fps: float = 0.0, max_frames: int = limits.max_frames, short_side: int = 0,
                 device: str = device, precision: str = "fp32",
                 presence_threshold: float | None = None, objects: str = "best",
                 progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's idiom)
        """Segment the video as /segment does, then score the masks against ground_truth (a
        zip of per-frame PNG masks, one folder per expression or one label value per
        expression: README, The app) with the DAVIS J and F. presence_threshold and objects
        as for /segment (with objects=all each expression's objects are scored together).
        Returns the scores as JSON (overall, per expression, per frame, the worst frames; in
        percent) and the same numbers as a CSV file."""
        try:  # the zip and its fit to the clip are checked before the model runs
            truth = read_truth(ground_truth, expressions or "",
                               *clip_frames(video, RunSettings(
                                   threshold, window, fps, max_frames, short_side, device,
                                   precision), limits))
        except RUN_ERRORS as err:
            raise _to_gr_error(err) from None
        session = None
        # A client that leaves closes this generator; closing the run's ends the model.
        with contextlib.closing(segment(video, expressions, model, threshold, window, fps,
                                        max_frames, short_side, device, precision, None,
                                        presence_threshold, objects,
                                        progress=progress)) as steps:
            for values in steps:
                if isinstance(values[4], Session):
                    session = values[4]
                else:
                    yield gr.skip(), gr.skip()
        try:
            scored = evaluate_result(session.exported, truth, model=session.exported.model_name
                                     or "", threshold=session.threshold)
            paths = write_scores(scored, tempfile.mkdtemp(prefix="evaluate-", dir=work_dir))
        finally:
            session.close()  # its overlay and masks are not returned
        yield scored.to_json(), str(paths["csv"])

    def evaluate_page(session: Session | None, ground_truth: str | None, frame: float = 0):
        """The current result (as shown: its threshold included) scored against the uploaded
        ground truth: summary, curves (the cursor at the explorer's ``frame``), worst frames,
        JSON, CSV, status line, and the scores kept for the cursor (`evaluation_curves`)."""
        keep = (gr.skip(),) * 5
        if session is None:
            return *keep, ("Segment the clip first: the evaluation scores the result shown "
                           "above."), gr.skip()
        try:
            result = session.exported
            truth = read_truth(ground_truth, [e.text for e in result], result.num_frames,
                               result.source.size)
            scored = evaluate_result(result, truth, model=result.model_name or "",
                                     threshold=session.threshold)
            paths = write_scores(scored, tempfile.mkdtemp(prefix="evaluate-",
                                                          dir=session.out_dir))
        except Exception as err:
            return *keep, _error_text(err), gr.skip()
        return (scored.summary(), evaluation_curves(scored, frame),
                safe_view("Worst frames", scored.render_worst, result, truth, session.frames),
                scored.to_json(), str(paths["csv"]), "", scored)

    def evaluation_curves(scored: Evaluation | None, frame: float | None):
        """The J and F curves with the cursor at the explorer's ``frame``, from the scores
        kept in the page's state (no model run, no scoring)."""
        if scored is None:
            return gr.skip()
        return safe_view("J and F per frame", scored.render_curves, frame)

    # ---------------------------------------------------------------- which words matter
    def _words_steps(model, video, expression, settings, swap):
        """The model's part of word importance (on ZeroGPU inside ``spaces.GPU``):
        ``(fraction, text, None)`` per window, then ``(1.0, text, WordView)``."""
        run = prepare_words(models, model, video, expression, settings, limits, swap)
        with contextlib.closing(run.steps()) as steps:
            for fraction, text in steps:
                yield fraction, text, run.view

    words_steps = on_gpu(_words_steps, lambda model, video, expression, settings, swap:
                         run_duration(models, limits, model, video,
                                      1 + 2 * len(expression.split()), settings))

    def _words(video, expression, model, settings, swap, progress):
        """Check, download, wait for the one-run slot, run: yields a status text per step,
        then the `WordView`."""
        place = models.slot.place()
        progress(0.0, desc="checking the input and loading the model")
        try:
            for text in _before_the_slot(place, [model], video, expression, settings,
                                         progress):
                yield text
            view = None
            with contextlib.closing(words_steps(model, video, expression, settings,
                                                bool(swap))) as steps:
                for fraction, text, done in steps:
                    progress(fraction, desc=text)
                    view = done or view
                    if done is None:
                        yield text
        finally:
            place.release()
        yield view

    def word_importance(video: str | None, expression: str, model: str = default.key,
                        threshold: float = 0.5, window: int = 36, fps: float = 0.0,
                        max_frames: int = limits.max_frames, short_side: int = 0,
                        device: str = device, precision: str = "fp32", swap: bool = False,
                        progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's idiom)
        """How much each word of one expression changes the answer: the expression run again
        without each word (and, with swap, with each colour or noun word replaced by another of
        its kind). Returns JSON: {expression, model, frames, score, words: [{word, index,
        variant, iou_change, score_change}], swaps: [...], seconds, windows}; iou_change is 1 -
        IoU with the full sentence's masks over the clip, score_change the variant's mean
        chosen-query score minus the full sentence's."""
        settings = RunSettings(threshold, window, fps, max_frames, short_side, device,
                               precision)
        try:
            text = pick_expression(expression, None)
            for step in _words(video, text, model, settings, swap, progress):
                if isinstance(step, WordView):
                    return words_json(step)
        except RUN_ERRORS as err:
            raise _to_gr_error(err) from None
        raise gr.Error("the word importance run ended without a result", print_exception=False)

    def words_page(video, expressions, expression, model=default.key, threshold=0.5,
                   window=36, fps=0.0, max_frames=limits.max_frames, short_side=0,
                   device=device, precision="fp32", swap=False,
                   progress: gr.Progress = gr.Progress()):  # noqa: B008 (Gradio's idiom)
        """The section's button: the chart, the word menu, the frame slider and view, the
        summary; a failure shows in the section's status line."""
        keep = (gr.skip(),) * 6
        yield "", *keep
        settings = RunSettings(threshold, window, fps, max_frames, short_side, device,
                               precision)
        view = None
        try:
            text = pick_expression(expression, expressions)
            for step in _words(video, text, model, settings, swap, progress):
                if isinstance(step, WordView):
                    view = step
                else:
                    yield step, *keep
        except Exception as err:
            yield _error_text(err), *keep
            return
        if view is None:
            return
        last = view.num_frames - 1
        first = "0" if view.answer.variants else None
        yield ("", safe_view("Word importance", view.render_chart, first),
               gr.Radio(choices=view.choices(), value=first),
               gr.Slider(minimum=0, maximum=max(last, 1), value=0, step=1,
                         interactive=last > 0),
               safe_view("Changed mask", view.render_frame, first, 0), view.summary(), view)

    def words_views(view, variant, frame):
        if view is None:
            return gr.skip(), gr.skip()
        return (safe_view("Word importance", view.render_chart, variant),
                safe_view("Changed mask", view.render_frame, variant, frame))

    def attention(session, expression, frame, word, level, head):
        if session is None:
            return gr.skip()
        return safe_view("Word attention", session.render_attention, expression, frame,
                             word, level, head)

    def queries(session, expression, frame, sampling):
        if session is None:
            return gr.skip()
        return safe_view("Queries", session.render_queries, expression, frame,
                             sampling=sampling)

    def preview(video: str | None):
        """The upload's first frame (any format the run reads; the browser need not play it)."""
        return first_frame(video)

    def menu_updates():
        """Every model menu (Segment's, Compare's A and B) relabelled as of now."""
        return tuple(gr.Dropdown(choices=models.menu()) for _ in range(3))

    def choose(model: str, which: str = ""):
        """The note under a menu; a model that is not here yet downloads now, its progress
        shown in the note (sessions choosing the same model share the download), and the menus
        then say it is on this machine. ``which`` names the menu in a shared note."""
        prefix = f"**{which}**: " if which else ""
        try:
            for step in models.fetch_steps(model):
                yield f"{prefix}**{step.text}**", gr.skip(), gr.skip(), gr.skip()
            yield prefix + models.note(model), *menu_updates()
        except AppInputError as err:
            yield f"{prefix}**Download failed**: {err}", gr.skip(), gr.skip(), gr.skip()

    def choose_a(model: str):
        yield from choose(model, "Model A")

    def choose_b(model: str):
        yield from choose(model, "Model B")

    def estimate(video, expressions, model, window, fps, max_frames, short_side, device_,
                 precision_):
        """How long Segment would take (the model's speed measured on this device), and, for
        a long CPU run, buttons for a frame rate or a frame cap that fit."""
        settings = RunSettings(0.5, window, fps, max_frames, short_side, device_, precision_)
        # On ZeroGPU the main process has no GPU to measure on: the speeds on record only.
        lines = len([e for e in (expressions or "").splitlines() if e.strip()])
        est = (recorded_estimate(models, limits, model, video, lines, settings) if zero_gpu()
               else estimate_run(models, model, video, expressions, settings, limits))
        hidden = gr.Button(visible=False)
        if est is None:
            return "", hidden, hidden, (None, None)
        fit_fps = (gr.Button(f"Process at {est.fps_fit:g} fps", visible=True)
                   if est.too_long and est.fps_fit is not None else hidden)
        fit_frames = (gr.Button(f"Only the first {est.frames_fit} frames", visible=True)
                      if est.too_long and est.frames_fit is not None else hidden)
        return est.text(), fit_fps, fit_frames, (est.fps_fit, est.frames_fit)

    synthetic, real = load_examples()
    with gr.Blocks(title="rvos: ReferFormer demo", delete_cache=(3600, STATE_TTL_S)) as demo:
        gr.Markdown(INTRO)
        with gr.Accordion("How ReferFormer works, stage by stage (each links to its view)",
                          open=False, elem_id="how"):
            gr.Markdown(HOW_IT_WORKS)
        with gr.Row():
            with gr.Column(scale=1):
                # A file, not a gr.Video: the browser need not be able to play the upload
                # (AVI, GIF, a PNG...); the server reads whatever `check_video` reads, the
                # same for the page and the API, and the preview is its first frame.
                video_in = gr.File(label="Video (mp4, mov, webm, mkv, avi, gif, ... or an "
                                         "image)", type="filepath", elem_id="vin")
                video_preview = gr.Image(label="First frame", interactive=False,
                                         height=VIDEO_HEIGHT // 2, elem_id="vin_preview")
                text = gr.Textbox(label="Expressions (one per line, at most 4)", lines=3,
                                  placeholder="the red circle\nthe square moving left",
                                  elem_id="txt")
                model = gr.Dropdown(choices=models.menu(), value=default.key, label="Model",
                                    elem_id="model")
                model_note = gr.Markdown(models.note(default.key), elem_id="note")
                with gr.Accordion("Advanced", open=False):
                    threshold = gr.Slider(0.05, 0.95, value=0.5, step=0.05,
                                          label="Mask threshold",
                                          info="changing it after a run re-thresholds the "
                                               "stored masks (no new model run)")
                    window = gr.Slider(*WINDOW_RANGE, value=36, step=1,
                                       label="Window length (frames)",
                                       info="frames per model call; consecutive windows share "
                                            "up to 8 frames to keep following the same object")
                    # No minimum/maximum on these: rvos.app.session's checks name the field.
                    fps = gr.Number(value=0, label="Processing fps (0 = every frame)")
                    max_frames = gr.Number(value=limits.max_frames, precision=0,
                                           label=f"Max frames (at most {limits.max_frames})")
                    short_side = gr.Slider(0, SHORT_SIDE_RANGE[1], value=0,
                                           step=SHORT_SIDE_STEP,
                                           label="Input short side (0 = the model's own)",
                                           info=f"otherwise {SHORT_SIDE_RANGE[0]}-"
                                                f"{SHORT_SIDE_RANGE[1]} pixels")
                    presence = gr.Slider(
                        0, 1, value=models.presence_threshold(default.key), step=0.01,
                        label="Presence threshold", elem_id="presence",
                        info="frames where the chosen query's score is below this get no mask "
                             "and count as \"not found\" (0: a mask on every frame, as in the "
                             "paper); starts at the chosen model's own value; changing it after "
                             "a run re-applies it (no new model run)")
                    objects = gr.Radio(
                        [("the best query (the paper's answer)", "best"),
                         ("every object the expression refers to", "all")], value="best",
                        label="Objects per expression", elem_id="objects",
                        info="all: every query scoring at least half the best's, unless its "
                             "mask repeats a better one's; each object in its own colour")
                    device_in = gr.Dropdown(choices=devices, value=device, label="Device")
                    precision = gr.Dropdown(
                        choices=precision_choices(devices), value="fp32", label="Precision",
                        elem_id="precision",
                        info="fp32 computes what the original computes; the others are "
                             "faster on this machine's hardware and move the masks a little "
                             "(see the README)")
                with gr.Row():
                    run_btn = gr.Button("Segment", variant="primary", elem_id="run")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                # Errors stay here until the next action (a toast would fade).
                status_md = gr.Markdown(elem_id="status")
                estimate_md = gr.Markdown(elem_id="estimate")
                with gr.Row():
                    fit_fps_btn = gr.Button(visible=False, size="sm", elem_id="fit_fps")
                    fit_frames_btn = gr.Button(visible=False, size="sm", elem_id="fit_frames")
                fits = gr.State((None, None))
                gr.Examples(synthetic, [video_in, text], label="Synthetic clips (built-in model)",
                            examples_per_page=6, elem_id="examples_synthetic")
                if real:
                    gr.Examples(real, [video_in, text],
                                label="Real footage (for the official models; see "
                                      "examples/README.md for its licence)",
                                elem_id="examples_real")
            with gr.Column(scale=1):
                video_out = gr.Video(label="Overlay", interactive=False, autoplay=True,
                                     height=VIDEO_HEIGHT, elem_id="vout")
                summary = gr.Markdown(label="Summary", elem_id="summary")
                with gr.Row():
                    masks_zip = gr.File(label="Masks (zip)", elem_id="zip")
                    result_json = gr.File(label="Result (json)", elem_id="json")
                with gr.Group(elem_id="slides"):
                    with gr.Row(equal_height=True):
                        columns = gr.Number(value=5, precision=0, minimum=1, maximum=12,
                                            label="Frames in the figure", elem_id="columns",
                                            scale=1)
                        export_btn = gr.Button("Export for slides", elem_id="export", scale=2)
                    with gr.Row():
                        png_btn = gr.DownloadButton("figure.png", interactive=False,
                                                    elem_id="dl_png", size="sm")
                        pdf_btn = gr.DownloadButton("figure.pdf", interactive=False,
                                                    elem_id="dl_pdf", size="sm")
                    # The GIF takes far longer than the figure: only on request.
                    with gr.Row():
                        gif_make_btn = gr.Button("Make overlay.gif", elem_id="make_gif",
                                                 size="sm")
                        gif_btn = gr.DownloadButton("overlay.gif", interactive=False,
                                                    elem_id="dl_gif", size="sm")
                    slides_status = gr.Markdown(elem_id="slides_status")

        gr.Markdown("## Evaluate against ground truth", elem_id="evaluate")
        gr.Markdown("Upload the true masks of this clip as a zip of per-frame PNGs (palette, "
                    "label or 0/255; one folder per expression, or one folder whose pixel "
                    "value k is expression k) and press **Evaluate**: the result above, at its "
                    "threshold, is scored with the DAVIS J (region IoU) and F (boundary "
                    "accuracy) per frame and per expression. A masks.zip of this app reads "
                    "as it is. The curves' vertical line is the frame the Frame explorer "
                    "below shows.")
        with gr.Row(equal_height=True):
            truth_in = gr.File(label="Ground truth (zip of mask PNGs)", file_types=[".zip"],
                               type="filepath", elem_id="truth", scale=3)
            evaluate_btn = gr.Button("Evaluate", variant="primary", elem_id="evaluate_run",
                                     scale=1)
        evaluate_status = gr.Markdown(elem_id="estatus")
        with gr.Row():
            with gr.Column(scale=3):
                curves_img = gr.Image(label="J and F per frame", interactive=False,
                                      height=VIEW_HEIGHT, elem_id="jf_curves")
            with gr.Column(scale=2):
                evaluate_summary = gr.Markdown(elem_id="esummary")
                scores_csv = gr.File(label="Scores (csv)", elem_id="scores_csv")
        worst_img = gr.Image(label="The three worst frames: prediction | ground truth",
                             interactive=False, height=DECODER_HEIGHT, elem_id="worst")
        with gr.Accordion("Scores (JSON)", open=False):
            scores_json = gr.JSON(label="Scores (JSON)", elem_id="scores_json")
        # The last evaluation's per-frame J and F: redraws the curves' cursor without scoring.
        evaluation = gr.State(None, time_to_live=STATE_TTL_S)

        gr.Markdown("## Frame explorer\nEvery query's box and score on the chosen frame (the "
                    "chosen query in yellow, dots are reference points), which pixels attend "
                    "to each word, and every query's score over time.")
        with gr.Row():
            frame = gr.Slider(0, 1, value=0, step=1, label="Frame", scale=3, elem_id="frame")
            expression = gr.Radio(label="Expression", elem_id="expr", scale=2)
        with gr.Row():
            with gr.Column():
                queries_img = gr.Image(label="Queries", interactive=False, height=VIEW_HEIGHT,
                                       elem_id="queries")
                sampling = gr.Checkbox(label="Show decoder sampling points", elem_id="sampling")
            with gr.Column():
                attention_img = gr.Image(label="Word attention", interactive=False,
                                         height=VIEW_HEIGHT, elem_id="attn")
                word = gr.Radio(label="Word", elem_id="word")
                with gr.Row():
                    level = gr.Dropdown(label="Feature level", elem_id="level")
                    head = gr.Dropdown(label="Attention head", elem_id="head",
                                       info="heads specialise (e.g. in colour words); the "
                                            "mean hides it")
        scores_img = gr.Image(label="Query scores over time (cursor: this frame)",
                              interactive=False, height=SCORES_HEIGHT, elem_id="scores")
        gr.Markdown("### Decoder, layer by layer\nEach decoder layer refines every query's box "
                    "and re-scores it (iterative box refinement). A path runs from a query's "
                    "learned start point (ring) through its box centre after each layer (dots, "
                    "dark to light); pick one query to see its box after every layer. Below, "
                    "every query's own mask on this frame: each query has its dynamic mask "
                    "kernels, so each has a mask, not only the chosen one. In the paper's "
                    "figure all queries crowd around the referred object; the built-in model's "
                    "do not (on its test clips most of the other queries sit on other objects "
                    "or empty ground: README, The app).",
                    elem_id="decoder_section")
        with gr.Row():
            with gr.Column(scale=3):
                decoder_img = gr.Image(label="Decoder, layer by layer", interactive=False,
                                       height=DECODER_HEIGHT, elem_id="decoder")
            with gr.Column(scale=2):
                decoder_query = gr.Radio(label="Query", elem_id="dquery",
                                         info="all: every query's path; one query: its box "
                                              "after every layer")
                layers_img = gr.Image(label="Score after each decoder layer (this frame)",
                                      interactive=False, height=SCORES_HEIGHT, elem_id="layers")
        # No label: it would sit on the first tile's title; the tiles carry their own.
        qmasks_img = gr.Image(label="Every query's mask on this frame", show_label=False,
                              interactive=False, height=SCORES_HEIGHT, elem_id="qmasks")
        session = gr.State(None, time_to_live=STATE_TTL_S, delete_callback=_close_session)

        gr.Markdown("## Which words matter", elem_id="words")
        gr.Markdown("One expression run again with each word left out (and, if asked, each "
                    "colour or object word swapped for another of its kind): how much the "
                    "answer changes per word. The video is read and the backbone run once "
                    "for all the sentences, so each word costs less than a run of its own "
                    "(about two thirds of one for the built-in model on a CPU; README).")
        with gr.Row(equal_height=True):
            words_text = gr.Textbox(label="Expression (empty: the first one above)", lines=1,
                                    elem_id="wi_text", scale=3)
            words_swap = gr.Checkbox(label="Also swap colour and object words", value=False,
                                     elem_id="wi_swap", scale=1)
            words_btn = gr.Button("Which words matter", variant="primary", elem_id="wi_run",
                                  scale=1)
        words_status = gr.Markdown(elem_id="wi_status")
        with gr.Row():
            with gr.Column(scale=3):
                words_chart = gr.Image(label="Change per word", interactive=False,
                                       height=VIEW_HEIGHT, elem_id="wi_chart")
            with gr.Column(scale=2):
                words_summary = gr.Markdown(elem_id="wi_summary")
                words_word = gr.Radio(label="Changed sentence shown", elem_id="wi_word")
        with gr.Row():
            words_frame = gr.Slider(0, 1, value=0, step=1, label="Frame", elem_id="wi_frame")
        words_img = gr.Image(label="Full sentence (yellow) and changed sentence (magenta)",
                             interactive=False, height=VIEW_HEIGHT, elem_id="wi_view")
        words_state = gr.State(None, time_to_live=STATE_TTL_S)
        words_json_out = gr.JSON(visible=False)
        api_words_btn = gr.Button(visible=False)

        gr.Markdown("## Compare two models", elem_id="compare")
        gr.Markdown("The clip and expressions above (with the Advanced settings) through two "
                    "models: both overlays side by side in one video, so they stay in step "
                    "frame by frame, and each model's query scores. The same model twice is "
                    "allowed (it runs once). Another system (SAM2, Sa2VA, ReferDINO, ...): "
                    "give its masks for this clip as a zip of per-frame PNGs in place of "
                    "model B.")
        with gr.Row(equal_height=True):
            model_a = gr.Dropdown(choices=models.menu(), value=default.key, label="Model A",
                                  elem_id="model_a")
            model_b = gr.Dropdown(choices=models.menu(), value=default.key, label="Model B",
                                  elem_id="model_b")
            masks_b_in = gr.File(label="or B: another system's masks (zip)",
                                 file_types=[".zip"], type="filepath", elem_id="masks_b")
            compare_btn = gr.Button("Compare", variant="primary", elem_id="compare_run")
        compare_note = gr.Markdown(elem_id="cnote")
        compare_status = gr.Markdown(elem_id="cstatus")
        with gr.Row():
            with gr.Column(scale=3):
                side_video = gr.Video(label="Side by side", interactive=False, autoplay=True,
                                      height=VIDEO_HEIGHT, elem_id="cvideo")
            with gr.Column(scale=2):
                compare_summary = gr.Markdown(label="Summary", elem_id="csummary")
        with gr.Row():
            overlay_a = gr.File(label="Overlay A", elem_id="c_overlay_a")
            overlay_b = gr.File(label="Overlay B", elem_id="c_overlay_b")
            result_a = gr.File(label="Result A", elem_id="c_result_a")
            result_b = gr.File(label="Result B", elem_id="c_result_b")
        with gr.Row():
            compare_frame = gr.Slider(0, 1, value=0, step=1, label="Frame", scale=3,
                                      elem_id="cframe")
            compare_expr = gr.Radio(label="Expression (score plots)", elem_id="cexpr", scale=2)
        compare_img = gr.Image(label="A | B on this frame", interactive=False,
                               height=VIEW_HEIGHT, elem_id="cview")
        with gr.Row():
            scores_a = gr.Image(label="Model A: query scores over time", interactive=False,
                                height=SCORES_HEIGHT, elem_id="cscores_a")
            scores_b = gr.Image(label="Model B: query scores over time", interactive=False,
                                height=SCORES_HEIGHT, elem_id="cscores_b")
        comparison = gr.State(None, time_to_live=STATE_TTL_S, delete_callback=_close_session)
        # Whether the last Segment / Compare brought a new result (the explorer fills then).
        fresh, compare_fresh = gr.State(False), gr.State(False)
        # The API's /segment and /compare: the same functions, failing as API errors do (the
        # page's buttons run `segment_page` / `compare_page`, which show errors as text).
        api_segment_btn = gr.Button(visible=False)
        api_compare_btn = gr.Button(visible=False)

        outputs = [video_out, masks_zip, result_json, summary, session]
        decoder_views_out = [decoder_img, layers_img, qmasks_img]
        explorer = [frame, expression, word, level, head, decoder_query, queries_img,
                    attention_img, scores_img, *decoder_views_out]
        segment_in = [video_in, text, model, threshold, window, fps, max_frames, short_side,
                      device_in, precision, session]
        # The API's presence_threshold defaults to None (each model's own); the page's slider
        # shows the chosen model's value.
        api_presence = gr.Number(None, visible=False, label="presence_threshold")
        # Runs wait for the one-run slot inside the handler (after any download, so a download
        # never holds up another visitor's run): Gradio lets them all in, up to IN_FLIGHT.
        runs = {"concurrency_limit": RunSlot.IN_FLIGHT, "concurrency_id": "runs"}
        api_segment_btn.click(segment, [*segment_in, api_presence, objects], outputs,
                              api_name="segment", **runs)
        run_event = run_btn.click(
            segment_page, [*segment_in, presence, objects], [*outputs, status_md, fresh],
            api_visibility="private", **runs)
        run_event.success(explore, [session, fresh], explorer, api_visibility="private")
        stop_btn.click(lambda: ("Stopped. Press **Segment** to run again.", ""), None,
                       [summary, status_md], cancels=[run_event], api_visibility="private")
        gr.on([threshold.release, presence.release],
              rethreshold, [session, threshold, presence], [*outputs, status_md],
              api_visibility="private", concurrency_limit=1, concurrency_id="model"
              ).success(mask_views, [session, expression, frame, sampling, decoder_query],
                        [queries_img, decoder_img, qmasks_img, scores_img],
                        api_visibility="private")
        video_in.change(preview, video_in, video_preview, api_visibility="private",
                        show_progress="hidden", trigger_mode="always_last")
        render = {"api_visibility": "private", "show_progress": "hidden",
                  "trigger_mode": "always_last", "concurrency_limit": 4}
        views_out = [queries_img, attention_img, scores_img, *decoder_views_out]
        frame.input(views,
                    [session, expression, frame, word, level, head, sampling, decoder_query],
                    views_out, **render)
        expression.input(change_expression,
                         [session, expression, frame, level, head, sampling, decoder_query],
                         [word, *views_out], **render)
        gr.on([word.input, level.input, head.input], attention,
              [session, expression, frame, word, level, head], attention_img, **render)
        sampling.input(queries, [session, expression, frame, sampling], queries_img, **render)
        decoder_query.input(decoder, [session, expression, frame, decoder_query], decoder_img,
                            **render)
        export_btn.click(export_slides, [session, columns], [png_btn, pdf_btn, slides_status],
                         api_visibility="private", concurrency_limit=2)
        gif_make_btn.click(export_gif, session, [gif_btn, slides_status],
                           api_visibility="private", concurrency_limit=2)
        # Choosing a model that is not here downloads it; no concurrency limit, so that a long
        # download holds up no other visitor (sessions choosing the same model share it).
        menus = [model, model_a, model_b]
        choice = {"api_visibility": "private", "show_progress": "hidden",
                  "concurrency_limit": None}
        # The run-time estimate follows every input it depends on (its own queue: measuring a
        # new model's speed must not wait behind someone's run).
        estimate_in = [video_in, text, model, window, fps, max_frames, short_side, device_in,
                       precision]
        estimate_out = [estimate_md, fit_fps_btn, fit_frames_btn, fits]
        guess = {"api_visibility": "private", "show_progress": "hidden",
                 "trigger_mode": "always_last", "concurrency_limit": 1,
                 "concurrency_id": "estimate"}
        gr.on([video_in.change, text.change, window.release, fps.change, max_frames.change,
               short_side.release, device_in.change, precision.change], estimate, estimate_in,
              estimate_out, **guess)
        fit_fps_btn.click(lambda f: f[0], fits, fps, api_visibility="private")
        fit_frames_btn.click(lambda f: f[1], fits, max_frames, api_visibility="private")
        model.input(choose, model, [model_note, *menus], **choice).then(
            estimate, estimate_in, estimate_out, **guess)
        # The presence slider follows the model: each model's own threshold.
        model.input(lambda m: _try(gr.skip(), models.presence_threshold, m), model, presence,
                    api_visibility="private", show_progress="hidden")
        model_a.input(choose_a, model_a, [compare_note, *menus], **choice)
        model_b.input(choose_b, model_b, [compare_note, *menus], **choice)
        # Labels say which models are on this machine: refreshed for every visitor, and after a
        # run that may have downloaded one.
        demo.load(menu_updates, None, menus, api_visibility="private", show_progress="hidden")
        run_event.success(menu_updates, None, menus, api_visibility="private",
                          show_progress="hidden")

        # New parameters last: /compare's earlier ones keep their places (State is not one).
        compare_in = [video_in, text, model_a, model_b, threshold, window, fps, max_frames,
                      short_side, device_in, precision, comparison, masks_b_in]
        compare_out = [overlay_a, overlay_b, result_a, result_b, side_video, compare_summary,
                       comparison]
        api_compare_btn.click(compare, [*compare_in, api_presence, objects], compare_out,
                              api_name="compare", **runs)
        compare_event = compare_btn.click(
            compare_page, [*compare_in, presence, objects],
            [*compare_out, compare_status, compare_fresh],
            api_visibility="private", **runs)
        compare_event.success(compare_explore, [comparison, compare_fresh],
                              [compare_frame, compare_expr, compare_img, scores_a, scores_b],
                              api_visibility="private")
        compare_event.success(menu_updates, None, menus, api_visibility="private",
                              show_progress="hidden")
        stop_btn.click(None, None, None, cancels=[compare_event], api_visibility="private")
        gr.on([compare_frame.input, compare_expr.input], compare_views,
              [comparison, compare_frame, compare_expr], [compare_img, scores_a, scores_b],
              **render)

        # Evaluate: the page scores the result it shows; /evaluate runs the model first.
        api_evaluate_btn = gr.Button(visible=False)
        api_evaluate_btn.click(
            evaluate, [video_in, text, truth_in, model, threshold, window, fps, max_frames,
                       short_side, device_in, precision, api_presence, objects],
            [scores_json, scores_csv],
            api_name="evaluate", **runs)
        evaluate_btn.click(evaluate_page, [session, truth_in, frame],
                           [evaluate_summary, curves_img, worst_img, scores_json, scores_csv,
                            evaluate_status, evaluation], api_visibility="private",
                           concurrency_limit=2)
        # The curves' cursor follows the explorer's frame slider: moved by hand, or put back
        # to the first frame by a new result (change, not input, sees both).
        frame.change(evaluation_curves, [evaluation, frame], curves_img, **render)

        words_settings = [model, threshold, window, fps, max_frames, short_side, device_in,
                          precision, words_swap]
        api_words_btn.click(word_importance, [video_in, words_text, *words_settings],
                            words_json_out, api_name="word_importance", **runs)
        words_event = words_btn.click(
            words_page, [video_in, text, words_text, *words_settings],
            [words_status, words_chart, words_word, words_frame, words_img, words_summary,
             words_state], api_visibility="private", **runs)
        stop_btn.click(None, None, None, cancels=[words_event], api_visibility="private")
        gr.on([words_word.input, words_frame.input], words_views,
              [words_state, words_word, words_frame], [words_chart, words_img], **render)
    return demo


def _close_session(session: Session | None) -> None:
    if session is not None:
        session.close()


def _stop_on_signals() -> None:
    """SIGTERM (and SIGINT) stop the app as Ctrl-C does: Gradio's own shutdown runs (its
    main-thread loop catches KeyboardInterrupt and closes the server), `main` returns, and the
    atexit handler removes the work folder. The default SIGTERM would end the process with no
    cleanup at all."""

    def stop(signum, _frame):
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends it at once
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    # The app's own messages (what visitors were told, tracebacks of failed views) at INFO;
    # the libraries' (httpx logs every request) only from WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s: "
                                                      "%(message)s")
    logging.getLogger("rvos").setLevel(logging.INFO)
    device = args.device or available_devices()[0]
    if device.startswith("cuda") and "cuda" not in available_devices():
        print(f"app.py: error: --device {device}: no CUDA GPU is usable here; use --device cpu",
              file=sys.stderr)
        return 2
    if args.threads is not None:
        import torch

        torch.set_num_threads(max(1, args.threads))
    try:
        limits = Limits(args.max_duration, args.max_frames, args.max_upload_mb)
        choices = model_choices(args.model, args.checkpoint, offline=args.offline)
        models = ModelCache(choices, text_encoder=args.text_encoder, offline=args.offline)
        if models.needs_download(models.default.key):
            print(f"app.py: downloading {models.default.key} before serving", flush=True)
        # built once, before the first visitor (on ZeroGPU on the CPU: rvos.app.zerogpu)
        models.get(models.default.key, start_up_device(device))
    except (AppInputError, ValueError) as err:
        print(f"app.py: error: {err}", file=sys.stderr)
        return 2
    # Under $RVOS_WORK_DIR when set (else the system's temp folder); removed on exit, on
    # Ctrl-C and on SIGTERM (how `docker stop` ends the app).
    parent = os.environ.get("RVOS_WORK_DIR") or None
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="rvos-app-", dir=parent))
    atexit.register(shutil.rmtree, work_dir, ignore_errors=True)
    print(f"app.py: work folder {work_dir}", flush=True)
    _stop_on_signals()
    demo = build_demo(models, limits, device, work_dir)
    demo.queue(max_size=16)
    print(f"app.py: model {models.default.key!r} loaded on {device} and UI built in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                max_file_size=f"{limits.max_upload_mb}mb", allowed_paths=[str(EXAMPLES_DIR)],
                show_error=True, css=CSS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
