"""DNW against the random-graph baseline (mode fixed) on the default data.

Runs ``python -m wiring.train`` for every (mode, edges, seed) with the default
settings otherwise, skipping runs already finished, and prints the final test
accuracy as mean +- std per (mode, edges), plus a CSV.

    python experiments/dnw_vs_fixed.py --edges 12000 1000 --seeds 0 1 2 --out runs/dnw_vs_fixed
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["dnw", "fixed"])
    parser.add_argument("--edges", nargs="+", type=int, default=[12000, 1000])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/dnw_vs_fixed"))
    parser.add_argument("--csv", type=Path, default=None, help="where to write the table (default OUT/results.csv)")
    args, train_args = parser.parse_known_args()
    rows = []
    for edges in args.edges:
        for mode in args.modes:
            for seed in args.seeds:
                run = args.out / f"{mode}-{edges}-s{seed}"
                if not (run / "wiring.graphml").is_file():
                    cmd = [sys.executable, "-m", "wiring.train", "--mode", mode, "--edges", str(edges),
                           "--seed", str(seed), "--out", str(run), "--progress", "none", *train_args]
                    if run.exists():
                        cmd.append("--overwrite")
                    print(" ".join(cmd), flush=True)
                    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                metrics = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
                last = metrics[-1]
                rows.append({"mode": mode, "edges": edges, "seed": seed, "test_acc": last["test_acc"],
                             "swapped_total": sum(m["swapped"] for m in metrics), "epochs": last["epoch"],
                             "seconds": round(sum(m["seconds"] for m in metrics), 1)})
                print(f"{mode:>6} edges {edges:>6} seed {seed}: test accuracy {last['test_acc']:.4f}", flush=True)
    path = args.csv or args.out / "results.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\n{'edges':>6} {'mode':>6}  test accuracy (mean +- std over {len(args.seeds)} seeds)")
    for edges in args.edges:
        for mode in args.modes:
            accs = [r["test_acc"] * 100 for r in rows if r["mode"] == mode and r["edges"] == edges]
            std = statistics.stdev(accs) if len(accs) > 1 else 0.0
            print(f"{edges:>6} {mode:>6}  {statistics.mean(accs):.2f} +- {std:.2f}")
    print(f"table: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
