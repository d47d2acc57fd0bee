"""Unit tests of the library, one module per grains module, on tiny random models built from configs."""
