"""Prefect flows and the shipped pipeline configurations (``*.yaml`` beside this file)."""

from pathlib import Path

PIPELINES_DIR = Path(__file__).parent
