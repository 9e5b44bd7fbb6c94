"""Near-duplicate search over 64-bit perceptual hashes (exact, no approximation)."""

from medcurate.dedup.hashes import components, groups, near_duplicate_cross_pairs, near_duplicate_pairs

__all__ = ["components", "groups", "near_duplicate_cross_pairs", "near_duplicate_pairs"]
