"""Query-Expansion-RL: query rewriters trained by reinforcement learning, rewarded by the retrieval chain."""
