"""Studies that run many evaluations: sweep, plan, compare, validate, calibrate, claims.
Imports ``sim.cost``, ``sim.engine``, ``hardware``, ``workloads``; never plots or the CLI."""
