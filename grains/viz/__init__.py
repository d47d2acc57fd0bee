"""Rendering without Gradio: token heatmaps, word diffs, result tables and cards, shared by notebooks
(`_repr_html_`, `show()`), the CLI and the app's components."""
