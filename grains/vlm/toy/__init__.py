"""A toy world with ground truth: generated scenes of coloured shapes with known boxes and masks (scenes, shapes),
POPE-style probe rows about them (probes), and the small vision-language model trained on them."""
