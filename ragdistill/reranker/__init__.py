"""Reranker-Distillation, one module per role: prompt, teachers, scoring (stage 1), rows (stage 2), training
(stage 3) and its losses, evaluation (stage 4), the pipeline contract (pipeline)."""
