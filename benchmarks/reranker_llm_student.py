"""The Reranker-Distillation README's tiny-model table for a yes/no LLM student: every loss, through train.py, on
the setup of tests/test_reranker_llm_student.py (tiny Qwen3 teacher and student, 6 WikiQA dev queries, 24 steps).
Prints, per loss, the first and last logged training loss and the mean per-query Spearman correlation of student
and teacher scores on the training queries, before and after. Run from the repository root:

    python benchmarks/reranker_llm_student.py
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    import torch
    from sentence_transformers import CrossEncoder

    import tests.test_reranker_llm_student as setup
    from ragdistill.core.report import to_markdown
    from ragdistill.reranker.rows import RowSettings, build_rows
    from ragdistill.reranker.training import load_student
    from tests.builders import tiny_models

    work = Path(tempfile.mkdtemp(prefix="reranker-llm-student-"))

    class Folders:  # what the test's module fixtures get from pytest
        def mktemp(self, name):
            return Path(tempfile.mkdtemp(prefix=name, dir=work))

    student = setup.build_qwen3(work / "student", seed=7)
    score_file, teacher, samples = setup.teacher_scores.__wrapped__(tiny_models(), Folders())
    groups = [{(s.query, p): teacher[(s.query, p)] for p in s.candidates} for s in samples]
    pairs = list(teacher)

    def agreement(model) -> float:
        scores = model.predict(pairs, activation_fn=torch.nn.Identity(), show_progress_bar=False)
        return setup.per_query_spearman(dict(zip(pairs, scores)), groups)

    before = agreement(load_student(str(student), setup.MAX_LENGTH, instruction=setup.INSTRUCTION))
    rows = []
    for loss, fmt in [("margin_mse", "ntuple"), ("listnet", "listwise"), ("lambda", "listwise"), ("mse", "ntuple")]:
        training_rows = work / f"rows-{loss}.jsonl"
        build_rows([score_file], training_rows, RowSettings(format=fmt, top_k=3, num_negatives=3))
        output = work / f"model-{loss}"
        start = time.perf_counter()
        setup.train(student, training_rows, output, "--loss", loss, "--max_steps", "24", "--learning_rate", "1e-4")
        seconds = time.perf_counter() - start
        losses = [e["loss"] for e in json.loads((output / "log_history.json").read_text()) if "loss" in e]
        rows.append([loss, fmt, f"{losses[0]:.4g} -> {losses[-1]:.4g}",
                     f"{before:.3f} -> {agreement(CrossEncoder(str(output))):.3f}", f"{seconds:.0f} s"])
    print(to_markdown(["loss", "rows", "training loss (first -> last logged)", "Spearman with the teacher", "time"],
                      rows, text_columns=2))


if __name__ == "__main__":
    main()
