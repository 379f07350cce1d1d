"""Query expansion on the bundled WikiQA with a BM25 first stage, on held-out queries: the original query, RM3 (the
classic untrained expansion), the relevance model of the feedback with every candidate term, and the term-selection
policy (ragdistill.expansion.term_policy) untrained and trained GRPO-style, rewarded by NDCG@10.

Corpus: every passage of WikiQA train, dev and test; training queries: the WikiQA train questions with a positive
(their labels grade the reward); test: the WikiQA test questions with a positive (their labels grade the table).
`--feedback dense` (default) weights each query's top feedback documents by the student embedder's cosine with the
query; `--feedback bm25` by their BM25 scores, as RM3 does.

    python benchmarks/query_expansion.py                       # the demo's all-MiniLM-L6-v2 as the embedder
    python benchmarks/query_expansion.py --feedback bm25 --steps 100

Writes OUTPUT_DIR/query_expansion.json and .md (NDCG@10, Recall@10, Recall@100, MRR@10, rewrite ms per query).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import torch

from ragdistill.core.cli import run_main
from ragdistill.core.jsonl import read_jsonl, write_json
from ragdistill.core.report import to_markdown, to_text
from ragdistill.data.bm25 import BM25
from ragdistill.expansion.feedback import DENSE_TEMPERATURE, document_weights, feedback_terms, rm3_query
from ragdistill.expansion.reward import ndcg_at_k, recall_at_k
from ragdistill.expansion.term_policy import BASE_FEATURES, TermPolicy, selected_query, term_features, train_policy

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
FEEDBACK_DOCS, CANDIDATE_TERMS, DEPTH = 10, 20, 100


def read_wikiqa(folder: Path) -> tuple[list[str], dict[str, list[tuple[str, set[int]]]]]:
    """The passages of every split (sorted, deduplicated) and, per split, (question, ids of its positives)."""
    splits = {name: read_jsonl(folder / f"{name}.jsonl.gz") for name in ("train", "dev", "test")}
    passages = sorted({p for rows in splits.values() for row in rows for p in row["positive"] + row["negative"]})
    index = {text: i for i, text in enumerate(passages)}
    queries = {name: [(row["query"], {index[p] for p in row["positive"]}) for row in rows if row["positive"]]
               for name, rows in splits.items()}
    return passages, queries


def metrics(hits: list[list[tuple[int, float]]], queries) -> dict[str, float]:
    rows = []
    for ranked, (_, positives) in zip(hits, queries):
        ids, gains = [str(d) for d, _ in ranked], {str(p): 1.0 for p in positives}
        first = next((rank for rank, d in enumerate(ranked[:10]) if d[0] in positives), None)
        rows.append([ndcg_at_k(ids, gains), recall_at_k(ids, gains, 10), recall_at_k(ids, gains, DEPTH),
                     0.0 if first is None else 1.0 / (first + 1)])
    return dict(zip(("ndcg@10", "recall@10", "recall@100", "mrr@10"), np.mean(rows, axis=0).round(4).tolist()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=str(ROOT / "data/wikiqa"), help="WikiQA's MTEB files")
    parser.add_argument("--embedder", default=None, help="student embedder (default: the demo's all-MiniLM-L6-v2)")
    parser.add_argument("--feedback", choices=("dense", "bm25"), default="dense")
    parser.add_argument("--steps", type=int, default=60, help="policy-gradient steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default=str(ROOT / "results/query_expansion"))
    args = parser.parse_args(argv)
    from sentence_transformers import SentenceTransformer

    from ragdistill.data.pretrained import minilm_path

    # 1. the corpus, the queries, BM25 and the embedder's corpus vectors (cached beside the results)
    passages, queries = read_wikiqa(Path(args.data_dir))
    bm25 = BM25(passages)
    model_path = str(Path(args.embedder or minilm_path()).resolve())
    embedder = SentenceTransformer(model_path, device="cpu")
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    cache = output / f"corpus-{hashlib.sha1(model_path.encode()).hexdigest()[:12]}-{len(passages)}.npy"
    if not cache.exists():
        np.save(cache, embedder.encode(passages, batch_size=64, normalize_embeddings=True, show_progress_bar=True))
    corpus = np.load(cache)
    logger.info("%d passages; %d training and %d test queries", len(passages), len(queries["train"]),
                len(queries["test"]))

    # 2. each query's feedback: its top BM25 documents, weighted, their candidate terms (timed: what the relevance
    #    model needs), then the terms' features (timed apart: what only the policy needs)
    def feedback(split):
        texts = [q for q, _ in queries[split]]
        start = time.perf_counter()
        hits = bm25.search(texts, FEEDBACK_DOCS)
        query_vectors = embedder.encode(texts, batch_size=64, normalize_embeddings=True)
        candidates = []
        for text, vector, ranked in zip(texts, query_vectors, hits):
            docs = [d for d, _ in ranked]
            weights = (document_weights(corpus[docs] @ vector, DENSE_TEMPERATURE) if args.feedback == "dense"
                       else document_weights([s for _, s in ranked]))
            candidates.append(feedback_terms(text, [passages[d] for d in docs], bm25, CANDIDATE_TERMS, weights))
        terms_seconds = time.perf_counter() - start
        start = time.perf_counter()
        features = [term_features(terms, embedder.encode(terms.terms, normalize_embeddings=True) @ vector
                                  if terms.terms else np.zeros(0, dtype=np.float32))
                    for terms, vector in zip(candidates, query_vectors)]
        features_seconds = time.perf_counter() - start
        items = list(zip(texts, candidates, features))
        return items, terms_seconds / len(texts), (terms_seconds + features_seconds) / len(texts)

    train_items, _, _ = feedback("train")
    test_items, feedback_seconds, policy_seconds = feedback("test")

    # 3. the policy, trained on the training queries: reward NDCG@10 of the expanded query, graded by their labels
    def reward(text, terms, positives):
        gains = {str(p): 1.0 for p in positives}
        return lambda mask: ndcg_at_k([str(d) for d, _ in bm25.search_weighted([selected_query(text, terms, mask)],
                                                                               10)[0]], gains)

    torch.manual_seed(args.seed)
    policy = TermPolicy(len(BASE_FEATURES) + 1)
    untrained = [policy.choose(features) for _, _, features in test_items]
    training = [(features, reward(text, terms, positives))
                for (text, terms, features), (_, positives) in zip(train_items, queries["train"])]
    log = train_policy(policy, training, steps=args.steps, seed=args.seed)
    trained = [policy.choose(features) for _, _, features in test_items]

    # 4. every method on the test queries: its expanded queries (None: the query as typed) and what it costs a query
    #    before the final search (RM3: its feedback search and expansion; the rest: their feedback, and for the
    #    policy the terms' features; the policy's own forward pass is left out, a few microseconds)
    test = queries["test"]
    start = time.perf_counter()
    rm3 = [rm3_query(text, [passages[d] for d, _ in ranked], [s for _, s in ranked])
           for (text, _), ranked in zip(test, bm25.search([text for text, _ in test], FEEDBACK_DOCS))]
    rm3_seconds = (time.perf_counter() - start) / len(test)
    methods = {
        "original query": (None, 0.0),
        "RM3 (BM25 feedback, 10 docs, 10 terms, 0.5)": (rm3, rm3_seconds),
        f"relevance model, {args.feedback} feedback, its {CANDIDATE_TERMS} candidate terms": (
            [selected_query(text, terms, np.ones(len(terms.terms))) for text, terms, _ in test_items],
            feedback_seconds),
        "term policy, untrained": ([selected_query(text, terms, mask) for (text, terms, _), mask
                                    in zip(test_items, untrained)], policy_seconds),
        "term policy, trained": ([selected_query(text, terms, mask) for (text, terms, _), mask
                                  in zip(test_items, trained)], policy_seconds),
    }
    results = []
    for name, (expanded, seconds) in methods.items():
        hits = (bm25.search([text for text, _ in test], DEPTH) if expanded is None
                else bm25.search_weighted(expanded, DEPTH))
        results.append({"method": name, **metrics(hits, test), "rewrite_ms": round(1000 * seconds, 2)})

    # 5. the table, printed and saved
    def kept(masks):  # the share of candidate terms kept, over the queries that have any
        return float(np.mean([float(m.float().mean()) for m in masks if len(m)] or [0.0]))

    base = results[0]["ndcg@10"]
    headers = ["method", "NDCG@10", "vs original", "Recall@10", "Recall@100", "MRR@10", "expansion ms/query"]
    rows = [[r["method"], f"{r['ndcg@10']:.4f}", f"{100 * (r['ndcg@10'] / base - 1):+.1f}%", f"{r['recall@10']:.4f}",
             f"{r['recall@100']:.4f}", f"{r['mrr@10']:.4f}", f"{r['rewrite_ms']:.1f}"] for r in results]
    notes = [f"{len(test)} WikiQA test questions, {len(passages)} passages, BM25 first stage; feedback: top "
             f"{FEEDBACK_DOCS} documents, {CANDIDATE_TERMS} candidate terms, {args.feedback} document weights",
             f"policy: {args.steps} steps on {len(training)} training questions; reward first 5 steps "
             f"{log.mean_reward(True, 5):.4f}, last 5 {log.mean_reward(False, 5):.4f}; groups with tied rewards "
             f"{np.mean([s['frac_reward_zero_std'] for s in log.steps]):.0%}; terms kept on test: untrained "
             f"{kept(untrained):.0%}, trained {kept(trained):.0%}",
             "candidate terms: the relevance model's heaviest, the query's own words and words unknown to the corpus "
             "left out (RM3 keeps the query's words among its terms); expansion ms: the work before the final search"]
    title = "Query expansion, WikiQA test, BM25"
    print(to_text(headers, rows, title=title, notes=notes))
    write_json(output / "query_expansion.json", {"settings": vars(args), "results": results, "notes": notes,
                                                 "training": log.steps})
    (output / "query_expansion.md").write_text(to_markdown(headers, rows, title=title, notes=notes) + "\n")
    logger.info("saved %s and %s", output / "query_expansion.json", output / "query_expansion.md")


if __name__ == "__main__":
    run_main(main)
