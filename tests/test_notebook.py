"""The quickstart notebook runs top to bottom, in a real kernel, with its tiny preset (so it cannot rot)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"


def _text(notebook) -> str:
    return "\n".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                     for output in cell.outputs if output.output_type == "stream")


@pytest.mark.slow
def test_quickstart_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.setenv("KERAS_VQVAE_QUICKSTART", "tiny")
    monkeypatch.setenv("KERAS_VQVAE_OASIS", str(tmp_path / "no_oasis_here"))  # takes the embedded-data branch
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    text = _text(notebook)
    assert "using the embedded synthetic data" in text
    assert "test: SSIM" in text
    assert "the export draws the codes generate() drew: True" in text
    pictures = sum(output.output_type == "display_data" and "image/png" in output.data
                   for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs)
    assert pictures >= 12  # slices, the run's four VQ-VAE plots, two per prior, codes, samples, the export's
    run = tmp_path / "runs" / "quickstart"
    for name in ("loss", "reconstructions", "code_maps", "codebook_usage", "pixelcnn_samples", "dcgan_samples"):
        assert (run / "plots" / f"{name}.png").stat().st_size > 1000


def test_the_committed_notebook_carries_no_outputs():
    """Outputs would go stale against the code; the notebook is committed clean and executed by the test above."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.outputs and cell.execution_count is None for cell in notebook.cells
               if cell.cell_type == "code")
