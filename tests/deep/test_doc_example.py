"""The embedding example of docs/deep.md runs as written (10-class digits, softmax head)."""

import pathlib
import re

import pytest

pytest.importorskip("torch")

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "deep.md"


def test_the_embedding_example_runs_as_written():
    text = DOC.read_text()
    start = text.index("Embeddings for a GLM head")
    code = re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)
    namespace = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    assert namespace["scores"].shape == (1200, 597)
    assert namespace["dtheta"].shape == (330,)
    assert type(namespace["aud"].problem_).__name__ == "MultinomialProblem"
