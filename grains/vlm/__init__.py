"""Vision-language model support: per-family adapters (adapters), tiny offline test models (tiny), loading real
checkpoints (loading), pixel-level IG (pixels) and POPE-style yes/no probes (pope). Import the submodules directly;
this package imports nothing heavy."""
