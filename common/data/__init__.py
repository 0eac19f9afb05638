"""Data sets, windowing, normalisation and client partitions (pure; no Flower).

Entry point: :func:`load_federation` (docs/data.md).
"""

from common.data.config import ClientsConfig, DataConfig, TierConfig
from common.data.errors import DataError
from common.data.federation import ClientData, Federation, ModalitySpec, load_federation, load_windows

__all__ = [
    "ClientData",
    "ClientsConfig",
    "DataConfig",
    "DataError",
    "Federation",
    "ModalitySpec",
    "TierConfig",
    "load_federation",
    "load_windows",
]
