"""The model menus (a model not on this machine downloads when chosen) and the run-time
estimate under the Segment button."""

from __future__ import annotations

import gradio as gr

from rvos.app.handlers.base import Handlers
from rvos.app.inputs import AppInputError, RunSettings
from rvos.app.runs import estimate_run
from rvos.app.zerogpu import recorded_estimate, zero_gpu


class MenuHandlers(Handlers):
    """The menus' notes and labels, and `estimate`."""

    def menu_updates(self):
        """Every model menu (Segment's, Compare's A and B) relabelled as of now."""
        return tuple(gr.Dropdown(choices=self.models.menu()) for _ in range(3))

    def choose(self, model: str, which: str = ""):
        """The note under a menu; a model that is not here yet downloads now, its progress
        shown in the note (sessions choosing the same model share the download), and the menus
        then say it is on this machine. ``which`` names the menu in a shared note."""
        prefix = f"**{which}**: " if which else ""
        try:
            for step in self.models.fetch_steps(model):
                yield f"{prefix}**{step.text}**", gr.skip(), gr.skip(), gr.skip()
            yield prefix + self.models.note(model), *self.menu_updates()
        except AppInputError as err:
            yield f"{prefix}**Download failed**: {err}", gr.skip(), gr.skip(), gr.skip()

    def choose_a(self, model: str):
        yield from self.choose(model, "Model A")

    def choose_b(self, model: str):
        yield from self.choose(model, "Model B")

    def estimate(self, video, expressions, model, window, fps, max_frames, short_side, device_,
                 precision_):
        """How long Segment would take (the model's speed measured on this device), and, for
        a long CPU run, buttons for a frame rate or a frame cap that fit."""
        settings = RunSettings(0.5, window, fps, max_frames, short_side, device_, precision_)
        # On ZeroGPU the main process has no GPU to measure on: the speeds on record only.
        lines = len([e for e in (expressions or "").splitlines() if e.strip()])
        est = (recorded_estimate(self.models, self.limits, model, video, lines, settings)
               if zero_gpu()
               else estimate_run(self.models, model, video, expressions, settings, self.limits))
        hidden = gr.Button(visible=False)
        if est is None:
            return "", hidden, hidden, (None, None)
        fit_fps = (gr.Button(f"Process at {est.fps_fit:g} fps", visible=True)
                   if est.too_long and est.fps_fit is not None else hidden)
        fit_frames = (gr.Button(f"Only the first {est.frames_fit} frames", visible=True)
                      if est.too_long and est.frames_fit is not None else hidden)
        return est.text(), fit_fps, fit_frames, (est.fps_fit, est.frames_fit)
