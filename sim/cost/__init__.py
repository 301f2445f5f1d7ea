"""The one cost model: ops on chips over numpy arrays (roofline, tiling, collectives), and
``simulate``/``evaluate`` that add it up. Imports only ``hardware`` and ``workloads``."""
