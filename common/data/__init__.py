"""Data sets, windowing, normalisation and client partitions (pure; no Flower)."""
