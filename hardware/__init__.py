"""Hardware descriptions: chips (compute, memory levels, overheads) and systems of chips."""

from hardware.chip import (
    DTYPE_BYTES,
    Chip,
    ConfigError,
    DType,
    Link,
    MemoryLevel,
    System,
    dtype_bytes,
)
from hardware.loader import apply_overrides, chip_from_dict, list_chips, load_chip, load_system

__all__ = [
    "DTYPE_BYTES",
    "Chip",
    "ConfigError",
    "DType",
    "Link",
    "MemoryLevel",
    "System",
    "apply_overrides",
    "chip_from_dict",
    "dtype_bytes",
    "list_chips",
    "load_chip",
    "load_system",
]
