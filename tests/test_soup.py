"""Model soups: ragdistill.core.soup averages students' weights (a SentenceTransformer and a CrossEncoder folder),
refuses students of different shapes; train.sh with SEEDS trains one student per seed and saves their soup, reuses
a member trained with the same arguments and retrains one trained with others."""

from __future__ import annotations

import subprocess

import pytest
import torch
from safetensors.torch import load_file

from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import read_json
from ragdistill.core.soup import average_models
from tests.builders import repo_env
from tests.conftest import REPO


def _perturbed(model, seed: int, folder):
    torch.manual_seed(seed)
    with torch.no_grad():
        for weight in model.parameters():
            weight.add_(torch.randn_like(weight))
    model.save(str(folder))
    return {name: value.clone() for name, value in model.state_dict().items()}


@pytest.mark.parametrize("kind", ["SentenceTransformer", "CrossEncoder"])
def test_a_soup_is_the_mean_of_its_members(tiny_models, tmp_path, kind):
    import sentence_transformers

    cls = getattr(sentence_transformers, kind)
    members = [_perturbed(cls(str(tiny_models["bert"]), device="cpu"), seed, tmp_path / f"seed-{seed}")
               for seed in (1, 2)]
    record = average_models([tmp_path / "seed-1", tmp_path / "seed-2"], tmp_path / "soup")
    assert read_json(record)["members"] == [str(tmp_path / "seed-1"), str(tmp_path / "seed-2")]
    soup = cls(str(tmp_path / "soup"), device="cpu").state_dict()
    for name, value in soup.items():
        expected = (members[0][name] + members[1][name]) / 2 if value.is_floating_point() else members[0][name]
        torch.testing.assert_close(value, expected)
    assert "uniform average of 2 students" in (tmp_path / "soup" / "README.md").read_text()


def test_a_soup_refuses_one_member_or_members_of_different_shapes(tiny_models, tmp_path):
    from sentence_transformers import SentenceTransformer

    _perturbed(SentenceTransformer(str(tiny_models["bert"]), device="cpu"), 1, tmp_path / "bert")
    with pytest.raises(InputError, match="at least two students"):
        average_models([tmp_path / "bert"], tmp_path / "one")
    with pytest.raises(InputError, match="weight files differ|tensors differ|has shape"):
        average_models([tmp_path / "bert", tiny_models["qwen3_embedder"]], tmp_path / "mixed")
    with pytest.raises(InputError, match="trained student path does not exist"):
        average_models([tmp_path / "bert", tmp_path / "missing"], tmp_path / "missing-member")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a trained student: no config.json"):
        average_models([tmp_path / "bert", tmp_path / "empty"], tmp_path / "empty-member")
    assert not (tmp_path / "mixed" / "soup.json").exists()


def _train_sh(tiny_models, rows, model_dir, **variables):
    env = repo_env(**{"STUDENT_MODEL": str(tiny_models["bert"]), "TRAINING_ROWS": str(rows),
                      "MODEL_DIR": str(model_dir), "MAX_STEPS": "2", "BATCH_SIZE": "4", "LEARNING_RATE": "1e-3",
                      "BF16": "false", "SAVE_STEPS": "1", "MAX_SEQ_LENGTH": "64", "TRANSFORMERS_OFFLINE": "1",
                      **variables})
    run = subprocess.run(["bash", str(REPO / "Embedding-Distillation/train.sh")], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout + run.stderr


def test_train_sh_with_seeds_saves_the_soup_and_reuses_finished_members(tiny_models, embedding_rows_file,
                                                                          tmp_path):
    model_dir = tmp_path / "model"
    _train_sh(tiny_models, embedding_rows_file, model_dir)  # one run first: the soup replaces it, record and all
    assert (model_dir / "training_summary.json").exists()
    _train_sh(tiny_models, embedding_rows_file, model_dir, SEEDS="1,2")
    members = [load_file(str(model_dir / f"seed-{seed}" / "model.safetensors")) for seed in (1, 2)]
    assert any(not torch.equal(members[0][name], members[1][name]) for name in members[0])  # the seeds differ
    soup = load_file(str(model_dir / "model.safetensors"))
    for name, value in soup.items():
        torch.testing.assert_close(value, (members[0][name] + members[1][name]) / 2)
    assert read_json(model_dir / "soup.json")["members"] == [str(model_dir / "seed-1"), str(model_dir / "seed-2")]
    assert not (model_dir / "training_summary.json").exists()  # each member's record stays in its folder
    assert read_json(model_dir / "seed-2" / "training_summary.json")["global_step"] == 2

    # again with the same arguments: nothing trains; seed 2 cut short (no end mark, checkpoints left) resumes
    (model_dir / "seed-2" / ".trained").unlink()
    (model_dir / "seed-2" / "kept").write_text("a member that resumes is not cleared first")
    log = _train_sh(tiny_models, embedding_rows_file, model_dir, SEEDS="1,2")
    assert "seed 1: trained already" in log and "seed 2: trained already" not in log
    assert (model_dir / "seed-2" / ".trained").exists() and (model_dir / "seed-2" / "kept").exists()
    again = load_file(str(model_dir / "model.safetensors"))
    assert all(torch.equal(again[name], soup[name]) for name in soup)

    # a member trained with other arguments (or on other rows) trains again
    arguments = model_dir / "seed-1" / ".arguments"
    arguments.write_text(arguments.read_text().replace("1e-3", "2e-3"))
    log = _train_sh(tiny_models, embedding_rows_file, model_dir, SEEDS="1,2")
    assert "seed 1: trained already" not in log and "seed 2: trained already" in log
    assert "2e-3" not in arguments.read_text() and (model_dir / "seed-2" / "kept").exists()
