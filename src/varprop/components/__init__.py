"""The network's components: activations (with their traits), safe activation expressions, weight
laws and init schemes."""
