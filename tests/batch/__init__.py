"""Tests of the Azure Batch backend, the pool's autoscale formula and the chunk/cost planner."""
