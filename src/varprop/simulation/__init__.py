"""Monte Carlo simulation of random networks: engines and their results.

- :mod:`~varprop.simulation.montecarlo`: :func:`simulate` (a ``Network``, or the keyword form);
- :mod:`~varprop.simulation.engines`: the engine objects (``supports``, ``cost``), the one
  ``engine="auto"`` rule :func:`~varprop.simulation.engines.select_engine` and the one refusal
  :func:`~varprop.simulation.engines.check_resources`;
- :mod:`~varprop.simulation.walk`: the walk over ``net.layers`` for a block of replicates (each
  layer's ``# --- sampling`` section draws and applies it);
- :mod:`~varprop.simulation.gaussian`: the exact :math:`O(n)` shortcut for normal weights;
- :mod:`~varprop.simulation.statistics`: reductions, underflow tests and validity masks;
- :mod:`~varprop.simulation.result`: :class:`~varprop.SimulationResult`.
"""
