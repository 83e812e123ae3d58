"""The app's "Which words matter" section: one expression run again without each of its words
(`rvos.predictor.words`), shown as a bar chart and as the changed mask on a frame."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from rvos.app.inputs import (
    AppInputError,
    Limits,
    RunSettings,
    check_video,
    check_work,
    parse_expressions,
)
from rvos.app.models import ModelCache
from rvos.app.session import FrameStore, _fit, _index
from rvos.app.text import escape_markdown, plural
from rvos.errors import PredictorError
from rvos.predictor.predictor import Predictor
from rvos.predictor.words import WordImportance, iter_word_importance, variants_of
from rvos.result.rle import decode_rle
from rvos.viz.words import plot_word_importance, word_change_frame

__all__ = ["MAX_SENTENCES", "WordRun", "WordView", "pick_expression", "prepare_words", "to_json"]


# Each changed sentence costs most of a run (`rvos.predictor.words`): a request runs at most this
# many (a 24-word expression with a few swaps).
MAX_SENTENCES = 32


def pick_expression(word_box: str | None, expressions: str | None) -> str:
    """The expression to weigh: the section's own box, else the first line of the page's
    Expressions box. `AppInputError` when both are empty or the box holds several lines."""
    own = [line for line in (word_box or "").splitlines() if line.strip()]
    if len(own) > 1:
        raise AppInputError(f"{len(own)} expressions given; word importance weighs one "
                            "expression at a time (one line)")
    if own:
        return " ".join(own[0].split())
    return parse_expressions(expressions)[0]


@dataclass
class WordView:
    """A finished word importance as the page keeps it: the numbers and the frames."""

    answer: WordImportance
    frames: FrameStore
    model: str

    @property
    def num_frames(self) -> int:
        return self.answer.num_frames

    def labels(self) -> list[str]:
        """One label per changed sentence: the word left out, or ``"word → replacement"``."""
        return [v.word if v.replacement is None else f"{v.word} → {v.replacement}"
                for v in self.answer.variants]

    def choices(self) -> list[tuple[str, str]]:
        """The page's word menu: (label, index as string), left-outs first."""
        marks = ["without " if v.replacement is None else "" for v in self.answer.variants]
        return [(f"{m}{label}", str(i)) for i, (m, label) in
                enumerate(zip(marks, self.labels(), strict=True))]

    def _variant(self, variant: int | str | None) -> int:
        return _index(variant, len(self.answer.variants)) if self.answer.variants else -1

    def render_chart(self, variant: int | str | None = None) -> np.ndarray:
        """uint8 image: the bar chart, the chosen changed sentence highlighted."""
        a = self.answer
        k = self._variant(variant)
        return plot_word_importance(self.labels(), a.iou_change, a.score_change,
                                    selected=k if k >= 0 else None, title=a.text)

    def render_frame(self, variant: int | str | None, frame: int | float | None) -> np.ndarray:
        """uint8 image: frame ``frame`` with the full sentence's mask and the changed one's."""
        a = self.answer
        t = _index(frame, self.num_frames)
        image = _display(self.frames.frame(t))
        full = _display(decode_rle(a.full.rle[t], a.full.size))
        k = self._variant(variant)
        if k < 0:
            return _fit(word_change_frame(image, full, np.zeros_like(full)))
        v = a.variants[k]
        what = (f"without “{v.word}”" if v.replacement is None
                else f"“{v.word}” → “{v.replacement}”")
        caption = f"{what}: {v.text or '(no words)'}"
        result = a.results[k]
        if result is None:  # no word left to run: only the full sentence's mask
            return _fit(word_change_frame(image, full, np.zeros_like(full),
                                          f"{what}: no word left, nothing to run"))
        changed = _display(decode_rle(result.rle[t], a.full.size))
        return _fit(word_change_frame(image, full, changed, caption))

    def summary(self) -> str:
        """Markdown: the run and the word that changed the answer most (the text escaped)."""
        a = self.answer
        lines = [f"*{escape_markdown(a.text)}* · model **{escape_markdown(self.model)}** · "
                 f"{plural(a.num_frames, 'frame')} · {plural(len(a.variants), 'changed sentence')}"
                 f" decoded from one backbone pass per window in {a.seconds:.1f} s"]
        left = a.left_out()
        if left:
            best = max(left, key=lambda i: np.nan_to_num(a.iou_change[i], nan=-1.0))
        if left and np.isfinite(a.iou_change[best]):
            lines += ["", f"Leaving out *{escape_markdown(a.variants[best].word)}* changes "
                          f"the masks most (1 − IoU {a.iou_change[best]:.2f}, score "
                          f"{a.score_change[best]:+.2f})."]
        lines += ["", "Mask change: 1 − IoU of the changed sentence's masks with the full "
                      "sentence's, pooled over the clip. Score change: the changed sentence's "
                      "mean score of its chosen query minus the full sentence's."]
        return "\n".join(lines)


# Small clips (the 256-pixel examples) are drawn at least this wide, so the caption under the
# frame stays readable and the masks' edges visible.
MIN_DISPLAY_WIDTH = 512


def _display(image: np.ndarray) -> np.ndarray:
    """A frame (uint8) or mask (bool) scaled up to `MIN_DISPLAY_WIDTH` when narrower (nearest
    neighbour for masks)."""
    h, w = image.shape[:2]
    if w >= MIN_DISPLAY_WIDTH:
        return image
    size = (MIN_DISPLAY_WIDTH, max(1, round(h * MIN_DISPLAY_WIDTH / w)))
    if image.dtype == bool:
        return cv2.resize(image.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


class WordRun:
    """One word importance, validated and ready: iterate `steps`, then take `view`."""

    def __init__(self, predictor: Predictor, video: str, expression: str, model: str,
                 settings: RunSettings, swap: bool) -> None:
        self.predictor, self.video, self.expression = predictor, video, expression
        self.model, self.settings, self.swap = model, settings, swap
        self._frames = FrameStore([], (0, 0), (0, 0))
        self.view: WordView | None = None

    def steps(self) -> Iterator[tuple[float | None, str]]:
        """``(fraction done, what is running)`` after every window; `view` is set at the end.
        Closing the iterator early stops the model and the video reader."""
        for p in iter_word_importance(self.predictor, self.video, self.expression,
                                      swap=self.swap, fps=self.settings.fps,
                                      max_frames=self.settings.max_frames,
                                      on_frame=self._frames.add):
            if p.result is not None:
                self.view = WordView(p.result, self._frames, self.model)
                yield 1.0, "done"
            else:
                total = f"/{p.total_frames}" if p.total_frames else ""
                yield p.fraction, f"word importance: {p.frames_done}{total} frames"


def prepare_words(models: ModelCache, model: str | None, video: str | None, expression: str,
                  settings: RunSettings, limits: Limits, swap: bool = False) -> WordRun:
    """Check every input (cheapest first), load the model if needed and build the run, as
    `rvos.app.runs.prepare_run` does for Segment. Raises `AppInputError`."""
    settings = settings.checked(limits)
    choice = models.choice(model)
    info = check_video(video, limits)
    settings = check_work(info, settings, limits)
    net = models.get(choice.key, settings.device, precision=settings.precision)
    count = len(variants_of(net.tokenizer, expression, swap))
    if count > MAX_SENTENCES:
        raise AppInputError(f"this expression makes {count} changed sentences; word importance "
                            f"runs at most {MAX_SENTENCES} per request: shorten it"
                            + (" or leave out the swaps" if swap else ""))
    try:
        predictor = Predictor(net, device=settings.device, window=settings.window,
                              short_side=settings.short_side or "auto",
                              threshold=settings.threshold, model_name=choice.key)
    except PredictorError as err:
        raise AppInputError(str(err)) from None
    return WordRun(predictor, str(video), expression, choice.key, settings, bool(swap))


def to_json(view: WordView) -> dict:
    """The API's answer: `WordImportance.to_json` plus the model."""
    doc = view.answer.to_json()
    doc["model"] = view.model
    return doc
