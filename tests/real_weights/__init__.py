"""Real-weight tests on the embedded Gemma-3-270M (marked slow; CI runs them)."""
