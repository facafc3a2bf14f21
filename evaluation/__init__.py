"""evaluation: flow benchmarks and self-reenactment error tables. Built in later issues."""
