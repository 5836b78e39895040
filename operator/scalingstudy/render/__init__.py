"""Rendering a fit's one verdict (`fitting.verdict`) for people: the CLI table
(`table`), report.html (`html`), the plots (`plot`, `plot_isoflop`) and the output
folder that `run` and `get` write (`output`: results.csv, fit.json, design.json)."""
