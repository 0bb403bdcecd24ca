"""Helpers shared by the test modules (no test module imports another)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
