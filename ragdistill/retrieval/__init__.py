"""Milvus-Optimization: the retrieval test set (corpus), the Milvus index and its encoders, the chain a RAG
service runs per query, and chains side by side (evaluation)."""
