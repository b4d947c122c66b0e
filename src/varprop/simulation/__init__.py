"""Monte Carlo simulation of random networks: engines and their results."""
