"""The model of a network: the quantity vocabulary, the moment state, the layers and
:class:`Network`."""
