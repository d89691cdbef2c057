"""examples/study.ipynb runs as a user runs it: a real Jupyter kernel."""

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "study.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_example_notebook_runs_the_quick_study_and_draws_inline(tmp_path, quick_run):
    """Its run folder starts as a copy of the CLI's quick study (the same keys, so the notebook
    computes nothing: what a user sees rerunning it); its figure is drawn inline and its report
    built anew."""
    run = tmp_path / "runs" / "mnist-5k-quick"
    shutil.copytree(quick_run, run)
    (run / "report.html").unlink()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "classic only: " in text and "best on validation:" in text
    assert "classic only: 0 steps computed" in text and "whole study: 0 computed" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, "the confusion matrix was not drawn inline"
    assert (run / "report.html").is_file()
