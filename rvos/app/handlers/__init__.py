"""The page's callbacks, out of app.py's layout and wiring; one module per part of the page.

Gradio makes each callback's signature (parameter names, order and defaults) and docstring the
public HTTP API (/segment, /compare, /evaluate, /word_importance): change them only as an API
change. Callbacks that need the demo's models, limits, device or work folder are methods of a
`base.Handlers` subclass (`segment`, `compare`, `evaluate`, `words`, `menus`); those that only
draw from a stored result are plain functions (`explorer`, and the views of the others).
"""
