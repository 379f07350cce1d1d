"""Embedding-Distillation, one module per role: teachers, scoring (stages 1-2: teacher similarities, written as
rows), training (stage 3) and its losses, evaluation (stage 4), the pipeline contract (pipeline); the same stage
numbers as Reranker-Distillation, whose rows are a stage of their own."""
