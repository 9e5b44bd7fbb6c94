"""medcurate: curation of medical image-text corpora into versioned, auditable WebDataset releases."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("medcurate")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
