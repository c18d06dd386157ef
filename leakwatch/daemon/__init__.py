"""The always-on daemon: leader election, scheduled jobs, health and metrics. I/O."""
