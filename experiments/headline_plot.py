"""The README's headline figure: FOGZO's gain over STE, the paper's beside ours, per table row.

  python experiments/headline_plot.py runs/tables/{fixed_scale,lsq,quest,equal_time}/table.json \
      --out=docs/results/headline.png \
      --markdown=docs/results/headline.md

Gain, positive when FOGZO is better: accuracy points (FOGZO − STE) for image models, relative
perplexity reduction in % ((STE − FOGZO)/STE) for language models. Ours is the mean over seeds of
the per-seed gain (runs paired by seed) with its standard deviation as the error bar; rows whose
FOGZO variant is not named "fogzo" (equal-time) pair the second variant with "ste". Rows that
also ran one of the study's settings (ours, table_runner.confirmed_variants) get one more gain of
ours per setting, against its STE control (``PAIRS``); a setting no row ran gets no column.
"""

import argparse
import json
import statistics

import table_runner
from fogzo_jax.train import sweep


def gain(ste: float, fogzo: float, perplexity: bool) -> float:
  """FOGZO's gain over STE: accuracy points, or % perplexity reduction (positive = better)."""
  return 100.0 * (ste - fogzo) / ste if perplexity else fogzo - ste


# The study's settings against their STE controls: (STE variant, FOGZO variant, label).
PAIRS = (("ste_lr3x", "fogzo_rho0.3_lr3x", "ρ 0.3 at 3× lr vs STE at 3× lr"),
         ("ste", table_runner.RECIPE, "ρ 0.3, ste_linear, skip_zero_grad vs STE"),
         ("ste", table_runner.RECIPE_NOSKIP, "ρ 0.3, ste_linear vs STE"))


def paired(ste: dict, fogzo: dict) -> list[tuple[float, float]]:
  """(STE, FOGZO) values on the seeds both records ran, in seed order."""
  s_of, f_of = dict(zip(ste["seeds"], ste["values"])), dict(zip(fogzo["seeds"], fogzo["values"]))
  return [(s_of[k], f_of[k]) for k in sorted(set(s_of) & set(f_of))]


def row_gains(records: list[dict]) -> list[dict]:
  """Pairs each row's STE record with its FOGZO record → paper gain and our per-seed gains."""
  by_row = {}
  for r in records:
    if not r["reason"]:
      by_row.setdefault(r["row"], []).append(r)
  out = []
  for recs in by_row.values():
    named = {r["variant"]: r for r in recs}
    ste = named.get("ste")
    fogzo = named.get("fogzo") or next((r for r in recs if r["variant"] != "ste"), None)
    ran = lambda r: bool(r and r["values"])  # pylint: disable=unnecessary-lambda-assignment
    studied = {label: paired(named[a], named[b]) for a, b, label in PAIRS
               if ran(named.get(a)) and ran(named.get(b))}
    if not (ran(ste) and ran(fogzo)) and not studied:
      continue
    # A row that ran only the study's settings keeps its labels and the paper's numbers.
    first = named[next(a for a, b, label in PAIRS if label in studied)] if studied else None
    ste = ste if ran(ste) else dict(ste or first, values=[], seeds=[],
                                    paper_value=(ste or {}).get("paper_value"))
    fogzo = fogzo if ran(fogzo) else dict(fogzo or ste, values=[], seeds=[])
    ppl = ste["metric"] == "val_perplexity"
    pairs = paired(ste, fogzo)
    paper = None
    if ste["paper_value"] is not None and fogzo["paper_value"] is not None:
      paper = gain(ste["paper_value"], fogzo["paper_value"], ppl)
    ours_at = ste.get("scale", "").split(",")[0]  # two rows may share one paper setting
    label = f"{ste['paper']}\nours: {ours_at}" if ours_at else ste["paper"]
    out.append(dict(label=label, ours=[gain(a, b, ppl) for a, b in pairs], paper=paper,
                    perplexity=ppl, paper_ste=ste["paper_value"], paper_fogzo=fogzo["paper_value"],
                    ours_ste=[a for a, _ in pairs], ours_fogzo=[b for _, b in pairs],
                    studied={k: [gain(a, b, ppl) for a, b in v] for k, v in studied.items()}))
  return out


def studied_labels(gains: list[dict]) -> list[str]:
  """The labels of ``PAIRS`` that at least one row ran, in ``PAIRS`` order."""
  return [label for _, _, label in PAIRS if any(label in g["studied"] for g in gains)]


def markdown(gains: list[dict]) -> str:
  """The README's compact table: paper STE → FOGZO beside ours, and every gain. The columns of
  the paper's FOGZO (ours) and of each study setting appear only when some row ran them."""
  extra = studied_labels(gains)
  literal = any(g["ours"] for g in gains)
  lines = ["| paper setting (metric) / our scale | paper STE → FOGZO |"
           + (" ours STE → FOGZO |" if literal else "") + " gain paper |"
           + (" gain ours |" if literal else "")
           + "".join(f" gain ours, {label} |" for label in extra),
           "|---|---|---|" + "---|---|" * literal + "---|" * len(extra)]
  for g in gains:
    unit = "%" if g["perplexity"] else " pt"
    paper = "–" if g["paper"] is None else f"{g['paper_ste']:g} → {g['paper_fogzo']:g}"
    paper_gain = "–" if g["paper"] is None else f"{g['paper']:+.2f}{unit}"
    ours = (f"{sweep.mean_std(g['ours_ste'])} → {sweep.mean_std(g['ours_fogzo'])}"
            if g["ours"] else "not run")
    ours_gain = f"{statistics.mean(g['ours']):+.2f}{unit}" if g["ours"] else "–"
    lines.append(f"| {g['label'].replace(chr(10), ' / ')} | {paper} |"
                 + (f" {ours} |" if literal else "") + f" {paper_gain} |"
                 + (f" {ours_gain} |" if literal else "")
                 + "".join(f" {_mean_std(g['studied'].get(label, []), unit)} |"
                           for label in extra))
  return "\n".join(lines) + "\n"


def _mean_std(values: list[float], unit: str) -> str:
  """Mean ± std of paired gains, and the paired t (mean / (std/√n)) when there are seeds to."""
  if not values:
    return "–"
  if len(values) < 2:
    return f"{values[0]:+.2f}{unit}"
  mean, std = statistics.mean(values), statistics.stdev(values)
  t = f", t = {sweep.paired_t(values)[0]:+.2f}" if std > 0 else ""
  return f"{mean:+.2f} ± {std:.2f}{unit}{t}"


def plot(gains: list[dict], out: str) -> None:
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  fig, ax = plt.subplots(figsize=(10, 0.75 * len(gains) + 2.4))
  ys = range(len(gains))
  series = [("ours, paper's FOGZO (reduced scale, mean ± std over seeds)", "#1f77b4",
             [g["ours"] for g in gains])]
  series += [(f"ours, {label} (our setting)", color, [g["studied"].get(label, []) for g in gains])
             for label, color in zip(studied_labels(gains), ("#ff7f0e", "#2ca02c", "#d62728"))]
  series = [s for s in series if any(s[2])]  # a series no row ran gets no slot and no legend
  height = 0.8 / (1 + len(series))
  paper = [g["paper"] if g["paper"] is not None else 0.0 for g in gains]
  ax.barh([y - 0.4 + 0.5 * height for y in ys], paper, height=height, color="#999999",
          label="paper (its scale)")
  for k, (name, color, values) in enumerate(series, start=1):
    shown = [(y, v) for y, v in zip(ys, values) if v]
    ax.barh([y - 0.4 + (k + 0.5) * height for y, _ in shown],
            [statistics.mean(v) for _, v in shown], height=height,
            xerr=[statistics.stdev(v) if len(v) > 1 else 0.0 for _, v in shown],
            color=color, label=name)
  ax.axvline(0.0, color="black", linewidth=0.8)
  ax.set_yticks(list(ys))
  ax.set_yticklabels([g["label"] for g in gains], fontsize=8)
  ax.invert_yaxis()
  ax.set_xlabel("FOGZO gain over STE (> 0: FOGZO better)\naccuracy points, or % lower perplexity")
  ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1)
  fig.tight_layout()
  fig.savefig(out, dpi=120)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("tables", nargs="+", help="table.json files written by the table scripts")
  parser.add_argument("--out", default="headline.png")
  parser.add_argument("--markdown", default="", help="also write the compact table here")
  args = parser.parse_args()
  gains = []
  for path in args.tables:
    with open(path) as f:
      gains += row_gains(json.load(f)["records"])
  for g in gains:
    paper = "–" if g["paper"] is None else f"{g['paper']:+.2f}"
    print(f"{g['label'].replace(chr(10), ' | '):90s} paper {paper:>7s}   ours per seed "
          f"{', '.join(f'{v:+.2f}' for v in g['ours']) or '–'}"
          + "".join(f"; {k} {', '.join(f'{v:+.2f}' for v in vs)}"
                    for k, vs in g["studied"].items()))
  if args.markdown:
    with open(args.markdown, "w") as f:
      f.write(markdown(gains))
    print(f"wrote {args.markdown}")
  plot(gains, args.out)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
