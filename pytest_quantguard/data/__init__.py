"""Loading the validation set: formats, manifest, digests. A set yields batches of named arrays."""

from pytest_quantguard.data.source import MANIFEST_NAME
from pytest_quantguard.data.validation_set import Batch, ValidationSet, as_validation_set, load_folder

__all__ = ["MANIFEST_NAME", "Batch", "ValidationSet", "as_validation_set", "load_folder"]
