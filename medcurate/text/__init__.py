"""Text analysis helpers shared by stages (negation of findings, ...); pure Python, no models."""
