"""Mean-field theory: the one recursion, fast numerical predictions, symbolic derivations,
criticality and floating-point overflow."""
