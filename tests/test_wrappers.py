"""The two pipelines' bash wrappers speak one vocabulary: the same variable for the same role, feeding the same flag;
the teacher's settings in a sourced teacher.sh on both sides; one BF16=auto rule; old names still work, with a note."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULES = ("Embedding-Distillation", "Reranker-Distillation")
# Roles both pipelines have, by the variable that sets them.
SHARED = ("TEACHER_MODEL", "STUDENT_MODEL", "BACKEND", "INSTRUCTION", "TEACHER_MAX_LENGTH", "TEACHER_DTYPE",
          "TEACHER_ARGS", "TRAIN_FILES", "TEST_FILES", "OUTPUT_DIR", "MODEL_DIR", "EVAL_DIR", "TRAINING_ROWS",
          "MAX_QUERIES", "ENGINE", "NUM_REPLICAS", "RAY_ADDRESS", "NUM_NEGATIVES", "FORMAT", "LOSS", "LABEL_WEIGHT",
          "EPOCHS", "BATCH_SIZE", "GRAD_ACCUM", "LEARNING_RATE", "WARMUP", "MAX_SEQ_LENGTH", "BF16", "SAVE_STEPS",
          "LOGGING_STEPS", "SEED", "NPROC", "TRAIN_ARGS", "LORA_R", "LORA_ALPHA", "LORA_TARGET_MODULES",
          "GRADIENT_CHECKPOINTING", "STUDENT_DTYPE", "EVAL_BATCH_SIZE", "VARIANTS", "EXPORT_BATCH_SIZE")
RENAMED = {"TRAIN_FILE": "TRAIN_FILES", "TEST_FILE": "TEST_FILES", "IN_DOMAIN_FILES": "TEST_FILES",
           "TRAINED_MODEL": "MODEL_DIR"}
SETTABLE = re.compile(r'^(?:export )?([A-Z][A-Z0-9_]*)="(?:\$\(auto_bf16 ")?\$\{\1:?-', re.MULTILINE)
FLAG = re.compile(r'(--[a-z0-9_]+) "\$\{?([A-Z][A-Z0-9_]*)\}?"')


def wrappers(module: str) -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in sorted((REPO / module).glob("*.sh"))}


def settable(module: str) -> set[str]:
    return {name for text in wrappers(module).values() for name in SETTABLE.findall(text)}


def flags(module: str) -> dict[str, set[str]]:
    """Variable -> the stage-script flags it is passed as."""
    found: dict[str, set[str]] = {}
    for text in wrappers(module).values():
        for flag, name in FLAG.findall(text):
            found.setdefault(name, set()).add(flag)
    return found


def test_the_parsers_read_a_wrapper():
    text = 'EPOCHS="${EPOCHS:-3}"\nexport LOSS="${LOSS:-kl}"\nBF16="$(auto_bf16 "${BF16:-auto}")"\nX=1\n' \
           'run --num_train_epochs "$EPOCHS" --bf16 "${BF16}"'
    assert set(SETTABLE.findall(text)) == {"EPOCHS", "LOSS", "BF16"}
    assert FLAG.findall(text) == [("--num_train_epochs", "EPOCHS"), ("--bf16", "BF16")]


def test_a_role_has_one_name_on_both_sides():
    names = {module: settable(module) for module in MODULES}
    for module, found in names.items():
        assert not set(SHARED) - found, f"{module} lacks {sorted(set(SHARED) - found)}"
        assert not set(RENAMED) & found, f"{module} still sets {sorted(set(RENAMED) & found)}"


def test_a_shared_variable_feeds_the_same_flag():
    embedding, reranker = (flags(module) for module in MODULES)
    differing = {name: (embedding[name], reranker[name]) for name in SHARED
                 if name in embedding and name in reranker and embedding[name] != reranker[name]}
    assert differing == {}


@pytest.mark.parametrize("module", MODULES)
def test_teacher_settings_and_bf16_rule(module):
    scripts = wrappers(module)
    assert "TEACHER_FLAGS=(" in scripts["teacher.sh"]
    assert 'source "$HERE/teacher.sh"' in scripts["score.sh"]
    assert 'BF16="$(auto_bf16 "${BF16:-auto}")"' in scripts["train.sh"]
    assert "nvidia-smi" not in "".join(scripts.values())
    assert {"run_all.sh", "score.sh", "train.sh", "evaluation.sh", "export.sh", "teacher.sh", "paths.sh"} <= set(scripts)
    for name, text in scripts.items():  # every default of a file or folder is written once, in paths.sh
        if name not in ("paths.sh", "teacher.sh"):
            assert 'source "$HERE/paths.sh"' in text, name
            assert "OUTPUT_DIR:-" not in text and "TRAIN_FILES:-" not in text, name


def test_an_old_name_still_works_with_a_note():
    script = ('source scripts/common.sh; echo "$TRAIN_FILES|$TEST_FILES|$MODEL_DIR|${TRAIN_FILE:-gone}"; '
              'bash -c \'echo "${TRAIN_FILE:-gone in children}"\'')
    result = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, check=True,
                            env={"PATH": "/usr/bin:/bin", "TRAIN_FILE": "a.jsonl", "IN_DOMAIN_FILES": "b.jsonl",
                                 "TRAINED_MODEL": "m", "PYTHON": "python3"})
    assert result.stdout.splitlines() == ["a.jsonl|b.jsonl|m|gone", "gone in children"]
    notes = result.stderr.splitlines()
    assert len(notes) == 3 and all("is deprecated" in line for line in notes)
    assert "TRAIN_FILE is deprecated and goes in the next release; use TRAIN_FILES" in notes[0]
