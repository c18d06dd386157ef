"""The stages the jobs call: check, alert, report. Each owns its transactions. I/O."""
