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
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from rvos.cli.main import passive_openmp

passive_openmp()  # before torch is imported (by app_support): see rvos.cli.main.passive_openmp
from rvos.app.inputs import (  # noqa: E402
    SHORT_SIDE_RANGE,
    SHORT_SIDE_STEP,
    WINDOW_RANGE,
    AppInputError,
    Limits,
    available_devices,
    precision_choices,
)
from rvos.app.models import ModelCache, model_choices  # noqa: E402
from rvos.app.page_text import (  # noqa: E402
    COMPARE_ABOUT,
    DECODER_ABOUT,
    EVALUATE_ABOUT,
    EXPLORER_ABOUT,
    HOW_IT_WORKS,
    INTRO,
    WORDS_ABOUT,
)
from rvos.app.session import Session  # noqa: E402
from rvos.app.wiring import wire  # noqa: E402
from rvos.app.zerogpu import start_up_device  # noqa: E402

HERE = Path(__file__).resolve().parent
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
    """The Blocks UI: each part of the page laid out here, then its events wired
    (`rvos.app.wiring`) to the callbacks of `rvos.app.handlers`, which convert UI values and
    call `rvos.app.session`."""
    devices = available_devices()
    if device not in devices:
        devices.insert(0, device)  # e.g. --device cuda:1
    synthetic, real = load_examples()
    with gr.Blocks(title="rvos: ReferFormer demo", delete_cache=(3600, STATE_TTL_S)) as demo:
        gr.Markdown(INTRO)
        with gr.Accordion("How ReferFormer works, stage by stage (each links to its view)",
                          open=False, elem_id="how"):
            gr.Markdown(HOW_IT_WORKS)
        with gr.Row():
            with gr.Column(scale=1):
                inputs = _inputs(models, limits, devices, device, synthetic, real)
            with gr.Column(scale=1):
                outputs = _outputs()
        parts = [inputs, outputs, _evaluate_section(), _explorer_section(), _words_section(),
                 _compare_section(models)]  # made in page order
        ui = SimpleNamespace(**{name: c for part in parts for name, c in vars(part).items()})
        # Whether the last Segment / Compare brought a new result (the explorer fills then).
        ui.fresh, ui.compare_fresh = gr.State(False), gr.State(False)
        # The API's /segment and /compare: the same functions, failing as API errors do (the
        # page's buttons run `segment_page` / `compare_page`, which show errors as text).
        ui.api_segment_btn = gr.Button(visible=False)
        ui.api_compare_btn = gr.Button(visible=False)
        # The API's presence_threshold defaults to None (each model's own); the page's slider
        # shows the chosen model's value.
        ui.api_presence = gr.Number(None, visible=False, label="presence_threshold")

        wire(demo, ui, models, limits, device, work_dir)
    return demo


def _inputs(models: ModelCache, limits: Limits, devices: list[str], device: str,
            synthetic: list[list[str]], real: list[list[str]]) -> SimpleNamespace:
    """The left column: the upload, the expressions, the model, the Advanced settings, the
    Segment and Stop buttons with the status and the run-time estimate, and the examples."""
    default = models.default
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
            info="frames whose presence (the chosen query's score, or the model's "
                 "presence head where it has one) is below this get no mask and count "
                 "as \"not found\" (0: a mask on every frame, as in the paper); starts "
                 "at the chosen model's own value; changing it after a run re-applies "
                 "it (no new model run)")
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
    return SimpleNamespace(
        video_in=video_in, video_preview=video_preview, text=text, model=model,
        model_note=model_note, threshold=threshold, window=window, fps=fps,
        max_frames=max_frames, short_side=short_side, presence=presence, objects=objects,
        device_in=device_in, precision=precision, run_btn=run_btn, stop_btn=stop_btn,
        status_md=status_md, estimate_md=estimate_md, fit_fps_btn=fit_fps_btn,
        fit_frames_btn=fit_frames_btn, fits=fits)


def _outputs() -> SimpleNamespace:
    """The right column: the overlay, the summary, the files, and the slides' export."""
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
    return SimpleNamespace(
        video_out=video_out, summary=summary, masks_zip=masks_zip, result_json=result_json,
        columns=columns, export_btn=export_btn, png_btn=png_btn, pdf_btn=pdf_btn,
        gif_make_btn=gif_make_btn, gif_btn=gif_btn, slides_status=slides_status)


def _evaluate_section() -> SimpleNamespace:
    """Evaluate against ground truth: the upload, the scores and curves, the worst frames."""
    gr.Markdown("## Evaluate against ground truth", elem_id="evaluate")
    gr.Markdown(EVALUATE_ABOUT)
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
    return SimpleNamespace(
        truth_in=truth_in, evaluate_btn=evaluate_btn, evaluate_status=evaluate_status,
        curves_img=curves_img, evaluate_summary=evaluate_summary, scores_csv=scores_csv,
        worst_img=worst_img, scores_json=scores_json, evaluation=evaluation)


def _explorer_section() -> SimpleNamespace:
    """The frame explorer: the frame and expression, the queries, word attention, scores over
    time, the decoder layer by layer and every query's mask; the session's state."""
    gr.Markdown(EXPLORER_ABOUT)
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
    gr.Markdown(DECODER_ABOUT, elem_id="decoder_section")
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
    return SimpleNamespace(
        frame=frame, expression=expression, queries_img=queries_img, sampling=sampling,
        attention_img=attention_img, word=word, level=level, head=head, scores_img=scores_img,
        decoder_img=decoder_img, decoder_query=decoder_query, layers_img=layers_img,
        qmasks_img=qmasks_img, session=session)


def _words_section() -> SimpleNamespace:
    """Which words matter: the expression, the chart and the changed mask per frame."""
    gr.Markdown("## Which words matter", elem_id="words")
    gr.Markdown(WORDS_ABOUT)
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
    return SimpleNamespace(
        words_text=words_text, words_swap=words_swap, words_btn=words_btn,
        words_status=words_status, words_chart=words_chart, words_summary=words_summary,
        words_word=words_word, words_frame=words_frame, words_img=words_img,
        words_state=words_state, words_json_out=words_json_out, api_words_btn=api_words_btn)


def _compare_section(models: ModelCache) -> SimpleNamespace:
    """Compare two models: the menus (or B's masks), the side-by-side video, the files, and
    both models' views on a frame."""
    default = models.default
    gr.Markdown("## Compare two models", elem_id="compare")
    gr.Markdown(COMPARE_ABOUT)
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
    return SimpleNamespace(
        model_a=model_a, model_b=model_b, masks_b_in=masks_b_in, compare_btn=compare_btn,
        compare_note=compare_note, compare_status=compare_status, side_video=side_video,
        compare_summary=compare_summary, overlay_a=overlay_a, overlay_b=overlay_b,
        result_a=result_a, result_b=result_b, compare_frame=compare_frame,
        compare_expr=compare_expr, compare_img=compare_img, scores_a=scores_a,
        scores_b=scores_b, comparison=comparison)


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
