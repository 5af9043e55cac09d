"""The README's headline figure: FOGZO's gain over STE, the paper's beside ours, per table row.

  python experiments/headline_plot.py runs/tables/{fixed_scale,lsq,quest,equal_time}/table.json \
      --out=docs/results/headline.png \
      --markdown=docs/results/headline.md

Gain, positive when FOGZO is better: accuracy points (FOGZO − STE) for image models, relative
perplexity reduction in % ((STE − FOGZO)/STE) for language models. Ours is the mean over seeds of
the per-seed gain (runs paired by seed) with its standard deviation as the error bar; rows whose
FOGZO variant is not named "fogzo" (equal-time) pair the second variant with "ste". Rows that
also ran the study's setting (ours: noise share 0.3 at 3× the rate, table_runner.confirmed_variants)
get a second gain of ours, against STE at that same rate.
"""

import argparse
import json
import statistics

from fogzo_jax.train import sweep


def gain(ste: float, fogzo: float, perplexity: bool) -> float:
  """FOGZO's gain over STE: accuracy points, or % perplexity reduction (positive = better)."""
  return 100.0 * (ste - fogzo) / ste if perplexity else fogzo - ste


CONFIRMED = ("ste_lr3x", "fogzo_rho0.3_lr3x")  # (STE, FOGZO) at the same 3× rate


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
    ste3, fogzo3 = (named.get(v) for v in CONFIRMED)
    ran = lambda r: bool(r and r["values"])  # pylint: disable=unnecessary-lambda-assignment
    if not (ran(ste) and ran(fogzo)) and not (ran(ste3) and ran(fogzo3)):
      continue
    # A row that ran only the study's pair keeps its labels and the paper's numbers.
    ste = ste if ran(ste) else dict(ste3, values=[], seeds=[],
                                    paper_value=(ste or {}).get("paper_value"))
    fogzo = fogzo if ran(fogzo) else dict(fogzo or ste, values=[], seeds=[])
    ppl = ste["metric"] == "val_perplexity"
    pairs = paired(ste, fogzo)
    paper = None
    if ste["paper_value"] is not None and fogzo["paper_value"] is not None:
      paper = gain(ste["paper_value"], fogzo["paper_value"], ppl)
    ours_at = ste.get("scale", "").split(",")[0]  # two rows may share one paper setting
    label = f"{ste['paper']}\nours: {ours_at}" if ours_at else ste["paper"]
    confirmed = paired(ste3, fogzo3) if ran(ste3) and ran(fogzo3) else []
    out.append(dict(label=label, ours=[gain(a, b, ppl) for a, b in pairs], paper=paper,
                    perplexity=ppl, paper_ste=ste["paper_value"], paper_fogzo=fogzo["paper_value"],
                    ours_ste=[a for a, _ in pairs], ours_fogzo=[b for _, b in pairs],
                    ours_confirmed=[gain(a, b, ppl) for a, b in confirmed]))
  return out


def markdown(gains: list[dict]) -> str:
  """The README's compact table: paper STE → FOGZO beside ours, and both gains."""
  lines = ["| paper setting (metric) / our scale | paper STE → FOGZO | ours STE → FOGZO "
           "| gain paper | gain ours | gain ours, ρ 0.3 at 3× lr vs STE at 3× lr |",
           "|---|---|---|---|---|---|"]
  for g in gains:
    unit = "%" if g["perplexity"] else " pt"
    paper = "–" if g["paper"] is None else f"{g['paper_ste']:g} → {g['paper_fogzo']:g}"
    paper_gain = "–" if g["paper"] is None else f"{g['paper']:+.2f}{unit}"
    ours = (f"{sweep.mean_std(g['ours_ste'])} → {sweep.mean_std(g['ours_fogzo'])}"
            if g["ours"] else "not run")
    ours_gain = f"{statistics.mean(g['ours']):+.2f}{unit}" if g["ours"] else "–"
    lines.append(f"| {g['label'].replace(chr(10), ' / ')} | {paper} | "
                 f"{ours} | {paper_gain} | {ours_gain} | {_mean_std(g['ours_confirmed'], unit)} |")
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
  paper = [g["paper"] if g["paper"] is not None else 0.0 for g in gains]
  mean = [statistics.mean(g["ours"]) if g["ours"] else 0.0 for g in gains]
  err = [statistics.stdev(g["ours"]) if len(g["ours"]) > 1 else 0.0 for g in gains]
  ax.barh([y - 0.27 for y in ys], paper, height=0.27, color="#999999", label="paper (its scale)")
  ax.barh(list(ys), mean, height=0.27, xerr=err, color="#1f77b4",
          label="ours, paper's FOGZO (reduced scale, mean ± std over seeds)")
  confirmed = [(y, g["ours_confirmed"]) for y, g in zip(ys, gains) if g["ours_confirmed"]]
  if confirmed:
    ax.barh([y + 0.27 for y, _ in confirmed], [statistics.mean(v) for _, v in confirmed],
            height=0.27, xerr=[statistics.stdev(v) if len(v) > 1 else 0.0 for _, v in confirmed],
            color="#ff7f0e", label="ours, noise share 0.3 at 3× lr vs STE at 3× lr (our setting)")
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
          f"{', '.join(f'{v:+.2f}' for v in g['ours']) or '–'}; study's setting "
          f"{', '.join(f'{v:+.2f}' for v in g['ours_confirmed']) or '–'}")
  if args.markdown:
    with open(args.markdown, "w") as f:
      f.write(markdown(gains))
    print(f"wrote {args.markdown}")
  plot(gains, args.out)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
