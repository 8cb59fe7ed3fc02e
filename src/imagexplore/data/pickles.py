"""Reading pickled dataset files (CIFAR batches, revisited Oxford/Paris ground truth) without running code.

A pickle can call any importable function; these files only ever need numpy arrays, scalars and dtypes, so
every other global is refused before it is resolved.
"""

from __future__ import annotations

import io
import pickle

# The globals that numpy arrays/scalars need in Python-2 (protocol 2) and newer pickles, old and new numpy paths.
NUMPY_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }
)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in NUMPY_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to unpickle {module}.{name} (only numpy arrays are expected)"
            )
        return super().find_class(module, name)


def load_numpy_pickle(data: bytes, encoding: str = "bytes"):
    """Unpickle ``data`` allowing only plain containers and numpy objects (else ``pickle.UnpicklingError``)."""
    return _NumpyOnlyUnpickler(io.BytesIO(data), encoding=encoding).load()
