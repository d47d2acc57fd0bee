"""HTML cards, notes and tables the panels show, one module per tab (plus `common` for the small shared bits).
Each function turns a result into HTML (or a figure, or table rows) and computes nothing of its own."""
