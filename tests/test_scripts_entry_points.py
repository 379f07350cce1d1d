"""Every runnable script starts its work under `if __name__ == "__main__":`. vLLM's default engine (and torchrun,
Ray) start processes that import the main module again; a script doing work at import time would start it twice.
The tests run engines in-process (conftest.py), so this static check stands in for that path."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGE_FOLDERS = ("Reranker-Distillation", "Embedding-Distillation", "Milvus-Optimization", "Query-Expansion-RL")
SCRIPT_FOLDERS = (*STAGE_FOLDERS, "benchmarks", "scripts")
SCRIPTS = sorted(path for folder in SCRIPT_FOLDERS for path in (REPO / folder).glob("*.py"))
# Top-level statements that only define things.
DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
               ast.AnnAssign)


def _is_main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
            and isinstance(node.test.comparators[0], ast.Constant) and node.test.comparators[0].value == "__main__")


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def test_the_check_sees_the_scripts():
    assert len(SCRIPTS) >= 15, SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: str(path.relative_to(REPO)))
def test_script_does_no_work_at_import(script: Path):
    tree = ast.parse(script.read_text(encoding="utf-8"), filename=str(script))
    work = [node for node in tree.body
            if not (isinstance(node, DEFINITIONS) or _is_docstring(node) or _is_main_guard(node))]
    assert not work, f"{script.name}:{work[0].lineno}: runs at import; move it under if __name__ == '__main__':"
    mains = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main"]
    if mains:
        assert any(_is_main_guard(node) for node in tree.body), f"{script.name}: main() is never called under a guard"
        # one signature for every stage: main(argv=None), so a test or another script runs it with its own arguments
        assert [arg.arg for arg in mains[0].args.args] == ["argv"], f"{script.name}: main() takes no argv"
    if script.parent.name in STAGE_FOLDERS:  # the tests run main in-process, so the guard is checked here
        guard = next(node for node in tree.body if _is_main_guard(node))
        assert ast.unparse(guard.body[-1]).strip() == "run_main(main)", \
            f"{script.name}: its guard must end in run_main(main) (bad input: one line naming the file, exit 2)"


def test_the_check_catches_work_at_import(tmp_path):
    tree = ast.parse("import os\nos.getcwd()\n")
    assert not isinstance(tree.body[1], DEFINITIONS) and not _is_main_guard(tree.body[1])
    assert _is_main_guard(ast.parse("if __name__ == '__main__':\n    pass\n").body[0])
