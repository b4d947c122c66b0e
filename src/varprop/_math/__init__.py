"""Gaussian expectations (quadrature, verified tables), truncated normals and scalar lambdify:
numerical building blocks that know nothing about networks."""
