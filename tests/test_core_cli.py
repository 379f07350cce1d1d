"""core/cli.py's logging (the stages' readable output without the libraries' load reports for new weights) and
core/arguments.py's one check of every field's choices."""

from __future__ import annotations

import logging

import pytest

from ragdistill.core.arguments import StudentEvaluationArguments
from ragdistill.core.cli import _NewWeightsReport, setup_logging
from ragdistill.core.errors import InputError
from ragdistill.core.ray_engine import EngineArguments
from ragdistill.retrieval.chain import ChainArguments


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



@pytest.mark.parametrize("build, flag", [
    (lambda: EngineArguments(engine="slurm"), "--engine"),
    (lambda: ChainArguments(encoder_backend="tensorrt"), "--encoder_backend"),
    (lambda: StudentEvaluationArguments(student_model="a", trained_model=".", student_dtype="int4"), "--student_dtype"),
])
def test_a_value_outside_its_choices_is_refused_in_python_too(build, flag):
    with pytest.raises(InputError, match=f"{flag} must be one of .*, got"):
        build()
