"""Benchmarks of the GrAInS engine against the step-by-step reference loop (`python -m grains bench`).

Lives outside the `grains` package: the library ships without it; the repository checkout runs it, and the tests
import its reference implementation (benchmarks.reference)."""
