"""ragdistill: what the stage scripts of Reranker-Distillation/, Embedding-Distillation/ and Milvus-Optimization/ share."""

__version__ = "0.1.0"
