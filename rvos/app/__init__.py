"""What the Gradio app does that is not UI: inputs, models, runs, sessions, comparison."""
