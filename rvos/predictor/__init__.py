"""The predictor: `Predictor` (rvos.predictor.predictor) runs a model over a video in windows
(rvos.predictor.windows), reading it a window ahead (rvos.predictor.sources), and collects
each expression's result (rvos.predictor.accumulate); rvos.predictor.estimate says how long
a run will take."""

from rvos.predictor.predictor import Predictor, Progress

__all__ = ["Predictor", "Progress"]
