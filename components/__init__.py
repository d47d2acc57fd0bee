"""UI pieces for GrAInS Studio: HTML token heatmaps, text diffs and plotly charts (rendering only, no algorithm)."""
