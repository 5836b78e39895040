"""report.html: one self-contained page per study (the plot inlined, no script, no
network), so a study can be mailed, attached to a ticket or opened on an air-gapped
machine. Pure: the page is built from typed values; writing it is the caller's."""

from __future__ import annotations

import base64
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from html import escape

from scalingstudy.fitting.report import ComputeOptimalReport, FitReport
from scalingstudy.render.curves_html import STYLE as CURVES_STYLE
from scalingstudy.render.curves_html import TrialLine, curves_section
from scalingstudy.render.table import design_line, short
from scalingstudy.status import DesignStatus, TrialRecord

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em}
.source{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.4em 0}
td,th{border-bottom:1px solid #ddd;padding:.25em .7em;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}
.warn{background:#fff4e0;border-left:4px solid #e69500;padding:.4em .8em;margin:.3em 0}
.failed td{color:#a00}img{max-width:100%;border:1px solid #eee}
.none{color:#666;font-style:italic}
"""


@dataclass(frozen=True)
class ReportInput:
    title: str
    source: str
    records: Sequence[TrialRecord]
    fit: FitReport | None
    fit_error: str | None
    design: DesignStatus | None
    plot_png: bytes | None
    curves: Sequence[TrialLine] = ()
    """The trials' training curves (none: no "Training curves" section)."""


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], left: Collection[int] = (),
           row_class: Sequence[str] | None = None) -> str:  # fmt: skip
    """An HTML table of already-escaped cells; the columns ``left`` left-aligned (text)."""

    def cells(tag: str, values: Sequence[str]) -> str:
        return "".join(
            f"<{tag}{' class=l' if i in left else ''}>{v}</{tag}>" for i, v in enumerate(values)
        )

    body = "".join(
        f"<tr{f' class={row_class[i]}' if row_class and row_class[i] else ''}>{cells('td', r)}</tr>"
        for i, r in enumerate(rows)
    )
    return f"<table><tr>{cells('th', header)}</tr>{body}</table>"


def _interval(values: Sequence[float | None] | None, digits: int = 4) -> str:
    """An interval; an end the data do not bound reads "unbounded", never a number."""
    if not values:
        return '<span class="none">none</span>'
    return "[" + ", ".join("unbounded" if v is None else f"{v:.{digits}g}" for v in values) + "]"


def _exponents(fit: FitReport) -> str:
    lc = fit.learning_curve
    conf = f"{round(100 * lc.confidence)}% interval"
    beta = fit.verdict("learning_curve.beta")
    law = f"loss = {short(lc.alpha)} * m^{lc.beta:.4f} + {short(lc.gamma)} ({lc.form})"
    if beta is not None and not beta.drawn:
        law = f"not identified: {beta.reason}"
    rows = [
        ["beta_g (data)", f"{lc.beta:.4f}", _interval(lc.beta_interval), escape(law)],
        ["gamma (irreducible)", short(lc.gamma) if lc.form != "power-law" else "0",
         _interval(lc.gamma_interval) if lc.form != "power-law"
         else '<span class="none">not in this form</span>',
         f"{lc.n_points} points, R&sup2;(log) {lc.r2_log:.4f}"],
    ]  # fmt: skip
    ms = fit.model_size
    if ms is not None:
        if ms.beta is None:
            rows.append(["beta_p (model size)", "null", '<span class="none">not measured</span>',
                         escape(ms.reason or "")])  # fmt: skip
        else:
            law = f"{ms.unit} = {short(ms.alpha)} * m^{ms.beta:.4f} ({ms.method})"
            rows.append(["beta_p (model size)", f"{ms.beta:.4f}", _interval(ms.beta_interval),
                         escape(law)])  # fmt: skip
    if fit.joint:
        j = fit.joint
        co = j.compute_optimal
        law = f"E {j.E:.4g} + {j.A:.4g}/N^{j.alpha_N:.4f} + {j.B:.4g}/D^{j.beta_D:.4f}"
        rows += [
            ["alpha_N (joint)", f"{j.alpha_N:.4f}", _interval(j.intervals.get("alpha_N")),
             escape(law)],
            ["beta_D (joint)", f"{j.beta_D:.4f}", _interval(j.intervals.get("beta_D")), ""],
            ["compute-optimal a (N* ~ C^a)", f"{co.a:.3f}", _interval(co.a_interval, 3),
             f"b = {co.b:.3f} {_interval(co.b_interval, 3)}"],
        ]  # fmt: skip
    return _table(["quantity", "estimate", conf, "law"], rows, left=(0, 3))


def _predictions(fit: FitReport) -> str:
    if not fit.predictions and not fit.data_for_target:
        return ""
    conf = round(100 * fit.learning_curve.confidence)
    rows = [
        [f"{p.data_size:g}", f"{p.loss:.5g}", _interval(p.interval), f"{p.distance_ratio:.3g}x",
         escape(p.form or fit.learning_curve.form) + (f"<br>{escape(p.note)}" if p.note else "")]
        for p in fit.predictions
    ]  # fmt: skip
    parts = ["<h2>Predictions</h2>"]
    if rows:
        parts.append(_table(["data size", "loss", f"{conf}% prediction interval",
                             "beyond largest", "form"], rows))  # fmt: skip
    t = fit.data_for_target
    if t is not None:
        verdict = fit.verdict("data_for_target")
        found = (
            f"{t.data_size:g}"
            if t.data_size is not None
            else "may be unreachable ("
            + (verdict.reason if verdict and verdict.reason else "never reached")
            + ")"
        )
        parts.append(f"<p>Data for target loss {t.target_loss:g}: {escape(found)} "
                     f"{_interval(t.interval) if t.interval else ''}</p>")  # fmt: skip
    return "".join(parts)


def _compute_optimal(co: ComputeOptimalReport) -> str:
    rows = [
        [name, f"{pair.a:.3f}", _interval(pair.a_interval, 3), f"{pair.b:.3f}",
         _interval(pair.b_interval, 3)]
        for name, pair in (("per budget (approach 2)", co.per_budget),
                           ("joint law (approach 3)", co.joint)) if pair is not None
    ]  # fmt: skip
    budgets = [
        [f"{b.compute:.4g}", short(b.best_parameters) if b.best_parameters
         else f"beyond the sizes tried ({b.at_edge})", _interval(b.interval), f"{b.loss:.5g}"]
        for b in co.budgets
    ]  # fmt: skip
    return (
        f"<h2>Compute-optimal allocation (C = {co.flops_per_parameter_per_item:g} N D)</h2>"
        + _table(["method", "a of N* ~ C^a", "interval", "b of D* ~ C^b", "interval"], rows,
                 left=(0,))
        + _table(["compute", "best parameters", "interval", "lowest loss"], budgets)
    )  # fmt: skip


def _trials(records: Sequence[TrialRecord]) -> str:
    ordered = sorted(records, key=lambda r: (r.data_size, r.model_size, r.seed, r.trial))
    rows = [
        [escape(r.trial), escape(r.status), f"{r.data_size}", f"{r.model_size}", f"{r.seed}",
         short(r.learning_rate), short(r.loss, 5), short(r.parameters),
         short(r.duration_seconds, 3), escape(r.reason or ""),
         escape((r.message or "").strip().splitlines()[-1] if r.message else "")]
        for r in ordered
    ]  # fmt: skip
    header = ["trial", "status", "data size", "model size", "seed", "learning rate", "loss",
              "parameters", "seconds", "reason", "message"]  # fmt: skip
    classes = ["failed" if r.status == "Failed" else "" for r in ordered]
    return _table(header, rows, left=(0, 1, 9, 10), row_class=classes)


def render_report(r: ReportInput) -> str:
    ok = sum(x.status == "Succeeded" for x in r.records)
    pruned = sum(x.status == "Pruned" for x in r.records)
    failed = len(r.records) - ok - pruned
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<title>{escape(r.title)}: scaling study</title>",
        f"<style>{_STYLE}{CURVES_STYLE}</style></head><body>",
        f"<h1>{escape(r.title)}</h1><p class=source>{escape(r.source)}; {ok} trials "
        f"succeeded, {failed} failed" + (f", {pruned} pruned" if pruned else "") + "</p>",
    ]
    if r.design is not None and r.design.strategy != "grid":
        parts.append(f"<p>{escape(design_line(r.design))}</p>")
    if r.plot_png:
        data = base64.b64encode(r.plot_png).decode("ascii")
        parts.append(f'<img id=plot alt="learning curve" src="data:image/png;base64,{data}">')
    if r.fit is None:
        parts.append(f"<div class=warn id=no-fit>no fit: {escape(r.fit_error or '')}</div>")
    else:
        parts += ["<h2>Fitted laws</h2>", _exponents(r.fit), _predictions(r.fit)]
        if r.fit.compute_optimal:
            parts.append(_compute_optimal(r.fit.compute_optimal))
        warnings = "".join(f"<div class=warn>{escape(w)}</div>" for w in r.fit.warnings)
        parts.append(f"<h2>Warnings</h2>{warnings}" if warnings else "")
    if r.design and r.design.learning_rates:
        rows = [[f"{c.data_size}", f"{c.model_size}", f"{c.learning_rate:g}",
                 "edge of the sweep" if c.at_edge else ""]
                for c in r.design.learning_rates]  # fmt: skip
        parts += ["<h2>Best learning rate per cell</h2>",
                  _table(["data size", "model size", "learning rate", ""], rows)]  # fmt: skip
    parts += [curves_section(r.curves), "<h2>Trials</h2>", _trials(r.records),
              "</body></html>\n"]  # fmt: skip
    return "".join(parts)
