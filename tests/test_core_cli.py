"""core/cli.py's logging: the stages' readable output without the libraries' load reports for new weights."""

from __future__ import annotations

import logging

from ragdistill.core.cli import _NewWeightsReport, setup_logging


def test_no_load_report_or_loading_bar_for_a_new_head(tiny_models, capfd):
    from sentence_transformers import CrossEncoder

    setup_logging()
    CrossEncoder(str(tiny_models["bert"]), num_labels=1)  # a plain encoder: its one-label head is new on purpose
    out, err = capfd.readouterr()
    assert "LOAD REPORT" not in out + err and "MISSING" not in out + err
    assert "Loading weights" not in out + err


def test_a_report_of_mismatched_weights_is_kept():
    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("transformers.modeling_utils", logging.WARNING, __file__, 1, message, None, None)

    keep = _NewWeightsReport().filter
    assert not keep(record("BertForSequenceClassification LOAD REPORT from: x\nclassifier.bias | MISSING"))
    assert not keep(record("BertModel LOAD REPORT from: x\ncls.predictions.bias | UNEXPECTED"))
    assert keep(record("BertModel LOAD REPORT from: x\nclassifier.weight | MISMATCH"))
    assert keep(record("something else entirely"))


def test_no_note_for_an_embedder_loaded_as_a_cross_encoder(capfd):
    setup_logging()
    loader = logging.getLogger("sentence_transformers.base.model")
    loader.warning("Converting SentenceTransformer model /models/minilm to CrossEncoder.")
    loader.warning("another warning of that logger")
    err = capfd.readouterr().err
    assert "Converting" not in err and "another warning of that logger" in err
