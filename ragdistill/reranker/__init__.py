"""Reranker-Distillation, one module per role: prompt, teachers, scoring (stage 1), rows (stage 2),
training (stage 3), evaluation (stage 4)."""
