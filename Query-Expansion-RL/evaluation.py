"""Stage 2: rewriters side by side on held-out queries, one table per first stage (BM25, and the dense student where
--embedder is set): the original query; RM3 (the classic untrained expansion); for a term policy the relevance model
with every candidate term, the untrained and the trained policy; for an LLM rewriter its untrained start and the
trained one, and query2doc with the untrained model (no training). Columns: NDCG@10, Recall@10, Recall@100,
MRR@10 (by the labels), the rewrite's cost per query, and the rewrites that earned nothing.

With labels the tables are graded by them; pseudo-queries (candidate lists naming their "source") by their source
document; with --teacher_model a teacher-graded table follows (label-free: the teacher's scores of the retrieved
documents against the original query).

    python evaluation.py --corpus data/wikiqa/test.jsonl.gz \
        --distractor_files data/wikiqa/train.jsonl.gz,data/wikiqa/dev.jsonl.gz \
        --rewriter output/query_expansion/rewriter --embedder output/embedding/model --output_dir output/query_expansion

Writes query_expansion.json and query_expansion.md into --output_dir.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ragdistill.core.cli import parse_args, run_main
from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import write_json
from ragdistill.core.report import to_markdown, to_text
from ragdistill.expansion.environment import EnvironmentArguments, Grader, gradable, labelled, open_environment
from ragdistill.expansion.evaluation import evaluate, rewrite_all, table
from ragdistill.expansion.rewriters import load_rewriter
from ragdistill.expansion.rewriters.base import read_record
from ragdistill.reranker.teachers import TeacherArguments, load_teacher
from ragdistill.retrieval.corpus import CorpusArguments

logger = logging.getLogger(__name__)


@dataclass
class EvaluationArguments:
    rewriter: str | None = field(default=None, metadata={
        "help": "The trained rewriter's folder (train.py's --output_dir). Unset: the untrained methods only."})
    output_dir: str = field(default="output/query_expansion", metadata={
        "help": "Where query_expansion.json and .md go."})


def main(argv: list[str] | None = None) -> None:
    corpus_args, env_args, args, teacher_args = parse_args(
        CorpusArguments, EnvironmentArguments, EvaluationArguments, TeacherArguments, args=argv,
        defaults={"teacher_model": None})

    # 1. the held-out queries, the environment and the gradings (labels where there are any; the teacher if given)
    def gradings_of(found) -> list[str]:
        gradings = (["labels"] if labelled(found) else ["round_trip"] if found.sources else []) + (
            ["teacher"] if teacher_args.teacher_model else [])
        if not gradings:
            raise InputError(found.source, "no query has a label or a source document: give --teacher_model to "
                                           "grade label-free")
        return gradings

    retrieval_set, environment = open_environment(corpus_args, env_args, check=gradings_of)
    gradings = gradings_of(retrieval_set)
    embedder = environment.embedder
    teacher = load_teacher(teacher_args) if "teacher" in gradings else None
    first_stages = ["bm25"] + (["dense"] if embedder is not None else [])

    # 2. the methods: the original query, RM3, and the rewriter's family (untrained and trained)
    from ragdistill.expansion.rewriters.rm3 import RM3Rewriter

    methods = [None, RM3Rewriter()]
    if args.rewriter:
        kind = read_record(args.rewriter)["kind"]
        if kind == "term":
            from ragdistill.expansion.rewriters.term import TermRewriter

            # the rewriter's family reads the embedder it was trained with (loaded again only if it is not --embedder)
            trained = load_rewriter(args.rewriter, embedder=embedder, embedder_path=env_args.embedder)
            methods.append(TermRewriter(trained.idf, trained.embedder, trained.embedder_path,
                                        trained.feedback_weights, trained.candidate_terms, trained.original_weight))
            methods += [load_rewriter(args.rewriter, untrained=True, embedder=trained.embedder,
                                      embedder_path=trained.embedder_path), trained]
        else:
            untrained = load_rewriter(args.rewriter, untrained=True)
            methods += [untrained.with_prompt("query2doc", name="query2doc, untrained LLM"), untrained,
                        load_rewriter(args.rewriter)]

    # 3. every method's rewrites of every query (timed), then each first stage, each grading
    results, printed = [], []
    for grading in gradings:
        qids = gradable(retrieval_set, grading)
        qids = qids[:env_args.max_queries] if env_args.max_queries else qids
        texts = [retrieval_set.queries[q] for q in qids]
        rewrites = rewrite_all(environment, methods, texts, env_args.feedback_documents)
        grader = Grader(environment, retrieval_set, grading, teacher if grading == "teacher" else None)
        for first_stage in first_stages:
            rows = evaluate(environment, grader, qids, rewrites, first_stage)
            results += rows
            headers, cells = table(rows)
            judge = {"labels": "labels", "round_trip": "each query's source document"}.get(
                grading, f"the teacher {teacher_args.teacher_model}")
            title = f"Query expansion, {first_stage} first stage, graded by {judge}"
            notes = [f"{len(qids)} queries of {retrieval_set.source}; feedback: top {env_args.feedback_documents} "
                     "BM25 documents; rewrite ms: the work before the final search (feedback search, embeddings, "
                     "policy or generation)"]
            print(to_text(headers, cells, title=title, notes=notes))
            printed.append(to_markdown(headers, cells, title=title, notes=notes))

    # 4. saved
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    write_json(output / "query_expansion.json", {"source": retrieval_set.source, "rewriter": args.rewriter,
                                                 "results": results})
    (output / "query_expansion.md").write_text("\n\n".join(printed) + "\n", encoding="utf-8")
    logger.info("saved %s and %s", output / "query_expansion.json", output / "query_expansion.md")


if __name__ == "__main__":
    run_main(main)
