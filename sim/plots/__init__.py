"""Charts (matplotlib, loaded lazily): roofline, timelines, sweep heatmaps and Pareto fronts.
Imports ``sim.cost``, ``sim.engine``, ``sim.studies``; never the CLI."""
