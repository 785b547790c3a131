"""Shared helpers of the audit experiments (robustness.py, data_debugging.py): output paths.

Not a library module: imported by the experiment scripts.
"""

from pathlib import Path

OUTPUT = Path(__file__).resolve().parent / "output"


def output_dir():
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT
