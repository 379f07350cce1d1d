"""Getting data and demo models: hub download and MTEB/BEIR conversion, BM25, pretrained models from PyPI."""
