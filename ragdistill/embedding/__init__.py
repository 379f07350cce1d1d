"""Embedding-Distillation, one module per role: teachers, scoring (stage 1: teacher similarities as rows),
training (stage 2), evaluation (stage 3)."""
