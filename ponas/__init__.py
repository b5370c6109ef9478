"""PONAS: Progressive One-shot Neural Architecture Search (Huang & Chu, 2020)."""

__version__ = "0.1.0"
