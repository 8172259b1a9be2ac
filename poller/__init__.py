"""The poller: one run of the CronJob that moves every Task a step towards done."""
